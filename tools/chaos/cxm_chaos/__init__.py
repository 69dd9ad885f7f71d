"""Fault-injection harness: the platform under SIGKILL, broker and database restarts."""
