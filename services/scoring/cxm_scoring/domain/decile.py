"""Decile analysis: the customer base in 10 equal groups by purchase amount.

As in the Japanese decile analysis (デシル分析) of the source material, customers are ranked by
total purchase amount, highest first, and cut into ten groups of equal head count: decile 1 is
the top spenders, decile 10 the lowest. The base is every customer with a positive total;
a customer who never bought (or whose total is 0) has no decile.

Choice: periodic recomputation, not a streaming quantile sketch. A job ranks the whole base and
publishes ``DecileCuts`` (nine amounts); per event the scorer bisects the customer's new total
against them. That is exact against brute force for the snapshot, cheap per event, and the cut
points move slowly, so a snapshot every few minutes to an hour is fresh enough. A sketch
(t-digest, KLL) would avoid the job but only approximates ranks, and the decile of a customer
near a boundary would then be wrong in a way nobody can check. Ties share the better decile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cxm_scoring.domain.ranking import GroupCuts, equal_group_cuts

DECILES = 10


@dataclass(frozen=True, slots=True)
class DecileCuts:
    """Cut points of one snapshot of the base; serialisable to JSON."""

    cuts: GroupCuts
    base_size: int
    computed_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "cuts": self.cuts.to_dict(),
            "base_size": self.base_size,
            "computed_at": self.computed_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecileCuts:
        return cls(
            cuts=GroupCuts.from_dict(data["cuts"]),
            base_size=int(data["base_size"]),
            computed_at=float(data["computed_at"]),
        )


def compute_decile_cuts(*, amounts: Iterable[float], computed_at: float) -> DecileCuts:
    """The snapshot, from each customer's total purchase amount (non-purchasers are skipped)."""
    base = [a for a in amounts if a > 0]
    return DecileCuts(
        cuts=equal_group_cuts(values=base, groups=DECILES, higher_is_better=True),
        base_size=len(base),
        computed_at=computed_at,
    )


def decile_of(*, amount: float, cuts: DecileCuts) -> int | None:
    """1 (top spenders) .. 10, or None for a customer with nothing bought or an empty base."""
    if amount <= 0 or cuts.base_size == 0:
        return None
    return cuts.cuts.group_of(amount)


@dataclass(frozen=True, slots=True)
class DecileRow:
    """One line of the decile report: who is in the decile and how much of sales they make."""

    decile: int
    customers: int
    total_amount: float
    share_of_sales: float
    min_amount: float
    max_amount: float


def decile_report(*, amounts: Iterable[float]) -> list[DecileRow]:
    """The classic decile table for the whole base (for the periodic job and dashboards)."""
    base = [a for a in amounts if a > 0]
    cuts = compute_decile_cuts(amounts=base, computed_at=0.0)
    members: dict[int, list[float]] = {d: [] for d in range(1, DECILES + 1)}
    for a in base:
        members[cuts.cuts.group_of(a)].append(a)
    grand_total = sum(base)
    return [
        DecileRow(
            decile=d,
            customers=len(vals),
            total_amount=sum(vals),
            share_of_sales=sum(vals) / grand_total if grand_total else 0.0,
            min_amount=min(vals, default=0.0),
            max_amount=max(vals, default=0.0),
        )
        for d, vals in members.items()
    ]
