"""Errors of the identity package; one base class so callers can catch the family."""


class IdentityError(Exception):
    """Base class for identity-resolution errors."""


class InvalidRulesError(IdentityError):
    """The resolution rules configuration is not valid; the message lists every problem."""


class InvalidIdentifierValue(IdentityError):
    """An identifier value cannot be normalised; `reason` is safe to log (it holds no value)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MergeNotActiveError(IdentityError):
    """An unmerge was asked for a merge that is unknown or already undone."""
