"""Base-wide cut points (deciles, RFM quintiles) from per-partition statistics.

Approach (periodic recomputation, exact up to the stated rounding): every worker, on a timer,
summarises the customers of each table partition it owns as value -> head count histograms
(monetary rounded to 4 significant digits, purchase days and last purchase day exact) and
publishes one message per partition, keyed by the partition number, on a small compacted
internal topic. Every worker reads that whole topic and recomputes the cut points from the
sum of the latest histogram of every partition. So each worker ranks against the whole base,
not its own share, and a partition that moves to another worker is simply republished by its
new owner at the next tick. Cut points therefore lag the base by at most one interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from cxm_scoring.domain.decile import DecileCuts, compute_decile_cuts
from cxm_scoring.domain.purchases import DAY_S
from cxm_scoring.domain.rfm import RfmInput, RfmThresholds, compute_rfm_thresholds

MONETARY_DIGITS = 4


def partition_histogram(rows: Iterable[tuple[float, int, int]]) -> dict[str, Any]:
    """Histograms of (monetary, purchase days, last purchase day) rows of one partition."""
    monetary: Counter[str] = Counter()
    frequency: Counter[str] = Counter()
    last_day: Counter[str] = Counter()
    for amount, days, last in rows:
        monetary[f"{amount:.{MONETARY_DIGITS}g}"] += 1
        frequency[str(days)] += 1
        last_day[str(last)] += 1
    return {"monetary": monetary, "frequency": frequency, "last_day": last_day}


def _expand(hist: Mapping[str, int], cast: Any) -> list[Any]:
    out: list[Any] = []
    for value, count in hist.items():
        out.extend([cast(value)] * int(count))
    return out


def recompute_cuts(
    partitions: Iterable[Mapping[str, Any]],
) -> tuple[DecileCuts, RfmThresholds] | None:
    """Cut points of the whole base from every partition's latest histogram."""
    monetary: Counter[str] = Counter()
    frequency: Counter[str] = Counter()
    last_day: Counter[str] = Counter()
    for p in partitions:
        monetary.update(p["monetary"])
        frequency.update(p["frequency"])
        last_day.update(p["last_day"])
    if not monetary:
        return None
    amounts = sorted(_expand(monetary, float))
    freqs = sorted(_expand(frequency, int))
    days = sorted(_expand(last_day, int))
    today = days[-1]  # the base's reference day: the newest purchase day seen
    reference = (today + 1) * DAY_S - 1.0
    deciles = compute_decile_cuts(amounts=amounts, computed_at=reference)
    # Rows are paired only through their marginals: quintile cuts need each column alone.
    n = len(amounts)
    rows = [
        RfmInput(recency_days=float(today - d), frequency=float(f), monetary=m)
        for d, f, m in zip(days, freqs, amounts, strict=True)
    ]
    assert len(rows) == n
    return deciles, compute_rfm_thresholds(base=rows, computed_at=reference)
