"""The profile service's exceptions: one base class, mapped to HTTP statuses in api.py."""

from cxm_shared.errors import CxmError


class ProfileError(CxmError):
    """Base of the profile service's own errors."""


class NotFound(ProfileError):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class Conflict(ProfileError):
    """The request contradicts the current state (e.g. a quarantine already decided)."""


class BadRequest(ProfileError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
