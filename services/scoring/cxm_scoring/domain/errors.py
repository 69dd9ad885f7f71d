"""Errors raised by the scoring domain.

All derive from ``ScoringDomainError`` (a ``ValueError``: every one of them means "this input is
wrong"), so an agent can send the offending message to its dead-letter topic with the text
instead of crashing the partition.
"""


class ScoringDomainError(ValueError):
    """Base of every error the pure scoring code raises."""


class InvalidScoreError(ScoringDomainError):
    """A survey answer outside its scale (NPS 0-10, CSAT 1-5, CES 1-5)."""


class InvalidPurchaseError(ScoringDomainError):
    """A purchase amount or item that cannot be counted."""


class ModelFitError(ScoringDomainError):
    """The BG/NBD estimator was given unusable data or failed to converge."""


class SegmentConfigError(ScoringDomainError):
    """A segment rule is malformed; ``where`` names the offending entry (``segments[0].all[1]``)."""

    def __init__(self, *, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem
