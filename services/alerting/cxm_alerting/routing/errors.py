"""Errors raised while loading routing configuration."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in the configuration, located by its path (``route.routes[2].matchers[0]``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class RoutingConfigError(ValueError):
    """The routing/receiver configuration is invalid.

    All problems found are reported at once, so an operator fixes the file in one pass rather
    than one error per reload.
    """

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class MatcherSyntaxError(ValueError):
    """A matcher string does not follow the Alertmanager syntax."""
