"""Errors shared by every service."""


class CxmError(Exception):
    """Base of the platform's own exceptions."""


class ConfigurationError(CxmError):
    """Settings or configuration files that cannot be used; the message names the field."""


class DependencyUnavailable(CxmError):
    """Kafka or PostgreSQL does not answer. Callers map it to 503 + Retry-After, never 500."""

    def __init__(self, dependency: str, detail: str = "") -> None:
        self.dependency = dependency
        super().__init__(f"{dependency} unavailable" + (f": {detail}" if detail else ""))
