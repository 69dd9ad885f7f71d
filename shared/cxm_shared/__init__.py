"""The one library every CXM service imports. It imports no service."""
