"""Equal-size groups of the customer base (quintiles for RFM, deciles for decile analysis).

The cut points come from a snapshot of the whole base that a periodic job recomputes
(``equal_group_cuts``); per event the scorer only looks a value up against them
(``GroupCuts.group_of``: a bisect over at most nine numbers). Periodic recomputation is chosen
over a streaming quantile sketch because it is exact: a customer's group matches a brute-force
ranking of the snapshot, which a sketch only approximates.

Definition (nearest rank), for ``n`` customers ranked best first and ``G`` groups: the customer
at 0-based rank ``i`` falls in group ``1 + floor(G * i / n)``, so group 1 is the best and the
groups are equal (sizes differ by at most one when ``n`` is not a multiple of ``G``). Tied
customers share one group, the one the first of them reaches, so equal behaviour always gets an
equal score; with many ties (e.g. everybody bought once) the groups then differ in size.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any


@dataclass(frozen=True, slots=True)
class GroupCuts:
    """Cut points splitting the base into ``groups`` equal groups, group 1 the best.

    ``cuts`` is ascending and holds ``groups - 1`` values, or none when the base was empty (then
    every value falls in group 1: there is nobody to rank against).
    """

    groups: int
    higher_is_better: bool
    cuts: tuple[float, ...]

    def group_of(self, value: float) -> int:
        """The group (1 = best) a customer with ``value`` falls into."""
        if self.higher_is_better:
            # group = 1 + number of cut points strictly above the value
            return 1 + len(self.cuts) - bisect_right(self.cuts, value)
        # group = 1 + number of cut points strictly below the value
        return 1 + bisect_left(self.cuts, value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "higher_is_better": self.higher_is_better,
            "cuts": list(self.cuts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupCuts:
        cuts = tuple(float(c) for c in data["cuts"])
        groups = int(data["groups"])
        if cuts and len(cuts) != groups - 1:
            raise ValueError(f"cuts: expected {groups - 1} values, got {len(cuts)}")
        if any(a > b for a, b in pairwise(cuts)):
            raise ValueError("cuts: must be ascending")
        return cls(groups=groups, higher_is_better=bool(data["higher_is_better"]), cuts=cuts)


def equal_group_cuts(*, values: Iterable[float], groups: int, higher_is_better: bool) -> GroupCuts:
    """Cut points for ``groups`` equal groups of ``values`` (one value per customer)."""
    if groups < 2:
        raise ValueError(f"groups: must be at least 2, got {groups}")
    ranked = sorted(values, reverse=higher_is_better)
    n = len(ranked)
    if n == 0:
        return GroupCuts(groups=groups, higher_is_better=higher_is_better, cuts=())
    # The k-th boundary is the value of the last customer inside the first k/G of the base:
    # rank ceil(k*n/G) - 1, computed in integers so that n = 10**6 cannot round wrongly.
    boundaries = [ranked[-(-k * n // groups) - 1] for k in range(1, groups)]
    cuts = tuple(sorted(float(b) for b in boundaries))
    return GroupCuts(groups=groups, higher_is_better=higher_is_better, cuts=cuts)
