"""RFM: recency, frequency and monetary scores 1-5 (5 best) and the segment map.

Scores are quintiles of the customer base. A periodic job computes ``RfmThresholds`` from every
purchasing customer's (recency days, order count, total spend) with ``compute_rfm_thresholds``
and publishes the snapshot; per event the scorer calls ``rfm_scores`` with that snapshot (three
bisects). Quintile 1 of the base ranking (most recent / most frequent / biggest spenders) scores
5. Ties share the better score (see ``ranking``), so e.g. when most customers bought exactly once
they all get the same F score.

Segment map: the usual R x FM grid, where FM = round-half-up((F + M) / 2). Rows are R (5 = bought
most recently), columns FM (5 = buys most often / spends most):

    R \\ FM |  1               2                  3                  4                5
    -------+--------------------------------------------------------------------------------------
       5   |  new customers   potential loyal.   potential loyal.   champions        champions
       4   |  promising       potential loyal.   potential loyal.   loyal            champions
       3   |  about to sleep  need attention     need attention     loyal            loyal
       2   |  hibernating     about to sleep     at risk            at risk          can't lose them
       1   |  lost            hibernating        at risk            can't lose them  can't lose them

Read it as: high value that stopped buying is "at risk" / "can't lose them"; low value that
stopped buying is "hibernating" / "lost"; recent but not yet valuable is "new" / "promising" /
"potential loyalist".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cxm_scoring.domain.ranking import GroupCuts, equal_group_cuts

QUINTILES = 5


class RfmSegment(StrEnum):
    CHAMPIONS = "champions"
    LOYAL = "loyal"
    POTENTIAL_LOYALIST = "potential_loyalist"
    NEW_CUSTOMERS = "new_customers"
    PROMISING = "promising"
    NEED_ATTENTION = "need_attention"
    ABOUT_TO_SLEEP = "about_to_sleep"
    AT_RISK = "at_risk"
    CANT_LOSE_THEM = "cant_lose_them"
    HIBERNATING = "hibernating"
    LOST = "lost"


_S = RfmSegment
# SEGMENT_GRID[R - 1][FM - 1]
SEGMENT_GRID: tuple[tuple[RfmSegment, ...], ...] = (
    (_S.LOST, _S.HIBERNATING, _S.AT_RISK, _S.CANT_LOSE_THEM, _S.CANT_LOSE_THEM),
    (_S.HIBERNATING, _S.ABOUT_TO_SLEEP, _S.AT_RISK, _S.AT_RISK, _S.CANT_LOSE_THEM),
    (_S.ABOUT_TO_SLEEP, _S.NEED_ATTENTION, _S.NEED_ATTENTION, _S.LOYAL, _S.LOYAL),
    (_S.PROMISING, _S.POTENTIAL_LOYALIST, _S.POTENTIAL_LOYALIST, _S.LOYAL, _S.CHAMPIONS),
    (_S.NEW_CUSTOMERS, _S.POTENTIAL_LOYALIST, _S.POTENTIAL_LOYALIST, _S.CHAMPIONS, _S.CHAMPIONS),
)


@dataclass(frozen=True, slots=True)
class RfmThresholds:
    """Quintile cut points of the base, from one snapshot; serialisable to JSON."""

    recency_days: GroupCuts
    frequency: GroupCuts
    monetary: GroupCuts
    base_size: int
    computed_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "recency_days": self.recency_days.to_dict(),
            "frequency": self.frequency.to_dict(),
            "monetary": self.monetary.to_dict(),
            "base_size": self.base_size,
            "computed_at": self.computed_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RfmThresholds:
        return cls(
            recency_days=GroupCuts.from_dict(data["recency_days"]),
            frequency=GroupCuts.from_dict(data["frequency"]),
            monetary=GroupCuts.from_dict(data["monetary"]),
            base_size=int(data["base_size"]),
            computed_at=float(data["computed_at"]),
        )


@dataclass(frozen=True, slots=True)
class RfmInput:
    """One customer's raw RFM values at snapshot time."""

    recency_days: float
    frequency: float
    monetary: float


@dataclass(frozen=True, slots=True)
class RfmScores:
    recency: int
    frequency: int
    monetary: int

    @property
    def fm(self) -> int:
        """Mean of F and M, rounded half up (the grid's column)."""
        return (self.frequency + self.monetary + 1) // 2

    @property
    def code(self) -> str:
        """The conventional three-digit cell, e.g. "545"."""
        return f"{self.recency}{self.frequency}{self.monetary}"


def quintile_cuts(*, values: Iterable[float], higher_is_better: bool) -> GroupCuts:
    """Cut points splitting ``values`` (one per customer) into five equal groups."""
    return equal_group_cuts(values=values, groups=QUINTILES, higher_is_better=higher_is_better)


def compute_rfm_thresholds(*, base: Iterable[RfmInput], computed_at: float) -> RfmThresholds:
    """The snapshot, from every purchasing customer's raw values."""
    rows = list(base)
    return RfmThresholds(
        recency_days=quintile_cuts(values=[r.recency_days for r in rows], higher_is_better=False),
        frequency=quintile_cuts(values=[r.frequency for r in rows], higher_is_better=True),
        monetary=quintile_cuts(values=[r.monetary for r in rows], higher_is_better=True),
        base_size=len(rows),
        computed_at=computed_at,
    )


def _score(cuts: GroupCuts, value: float) -> int:
    # Quintile 1 (best fifth of the base) scores 5.
    return QUINTILES + 1 - cuts.group_of(value)


def rfm_scores(*, value: RfmInput, thresholds: RfmThresholds) -> RfmScores:
    return RfmScores(
        recency=_score(thresholds.recency_days, value.recency_days),
        frequency=_score(thresholds.frequency, value.frequency),
        monetary=_score(thresholds.monetary, value.monetary),
    )


def rfm_segment(*, scores: RfmScores) -> RfmSegment:
    for name, s in (("recency", scores.recency), ("fm", scores.fm)):
        if not 1 <= s <= QUINTILES:
            raise ValueError(f"{name}: score must be 1-5, got {s}")
    return SEGMENT_GRID[scores.recency - 1][scores.fm - 1]
