"""One customer's purchase rhythm and spend: the inputs of RFM, decile and BG/NBD.

Kept as a handful of numbers so a purchase event is an O(1) update. BG/NBD counts purchase
*occasions* on distinct UTC calendar days (several orders on one day are one repeat purchase,
the convention of Fader, Hardie & Lee's CDNOW data), so the state also remembers the days of the
last ``RECENT_DAYS_KEPT`` days it has seen: a late or duplicate order on one of those days is
recognised. An order arriving more than that many days late is counted as a new day: with
real traffic that is rare and it only ever overstates frequency by one.

Amounts are assumed to be in one currency (the agent converts before calling); refunds are not
purchases and are not recorded here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxm_scoring.domain.errors import InvalidPurchaseError

DAY_S = 86_400.0
RECENT_DAYS_KEPT = 35


def utc_day(at: float) -> int:
    """Days since the Unix epoch of the UTC calendar day containing ``at``."""
    return math.floor(at / DAY_S)


@dataclass(slots=True)
class PurchaseStats:
    order_count: int = 0
    total_amount: float = 0.0
    first_day: int | None = None
    last_day: int | None = None
    last_at: float | None = None
    purchase_days: int = 0  # distinct UTC days with at least one purchase
    recent_days: set[int] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        return {
            "order_count": self.order_count,
            "total_amount": self.total_amount,
            "first_day": self.first_day,
            "last_day": self.last_day,
            "last_at": self.last_at,
            "purchase_days": self.purchase_days,
            "recent_days": sorted(self.recent_days),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PurchaseStats:
        return cls(
            order_count=int(data["order_count"]),
            total_amount=float(data["total_amount"]),
            first_day=data["first_day"],
            last_day=data["last_day"],
            last_at=data["last_at"],
            purchase_days=int(data["purchase_days"]),
            recent_days=set(data["recent_days"]),
        )


def _forget_old_days(stats: PurchaseStats) -> None:
    if stats.last_day is None:
        return
    horizon = stats.last_day - RECENT_DAYS_KEPT
    if any(d <= horizon for d in stats.recent_days):
        stats.recent_days = {d for d in stats.recent_days if d > horizon}


def record_purchase(stats: PurchaseStats, *, at: float, amount: float) -> None:
    """Count one order (in place). ``amount`` is the order total, >= 0."""
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int | float)
        or not math.isfinite(amount)
        or amount < 0
    ):
        raise InvalidPurchaseError(f"amount: expected a finite number >= 0, got {amount!r}")
    day = utc_day(at)
    stats.order_count += 1
    stats.total_amount += amount
    if stats.last_at is None or at > stats.last_at:
        stats.last_at = at
    is_new_day = day not in stats.recent_days and day != stats.first_day
    if stats.last_day is not None and day <= stats.last_day - RECENT_DAYS_KEPT:
        # Too late to check against the remembered days: only the first day is known for sure.
        is_new_day = day != stats.first_day
    if is_new_day:
        stats.purchase_days += 1
    stats.first_day = day if stats.first_day is None else min(stats.first_day, day)
    stats.last_day = day if stats.last_day is None else max(stats.last_day, day)
    stats.recent_days.add(day)
    _forget_old_days(stats)


def merge_purchase_stats(a: PurchaseStats, b: PurchaseStats) -> PurchaseStats:
    """Stats of the merged customer. A day both customers bought on counts once when both still
    remember it (recent days and first days); older shared days cannot be seen and count twice."""
    known_a = a.recent_days if a.first_day is None else a.recent_days | {a.first_day}
    known_b = b.recent_days if b.first_day is None else b.recent_days | {b.first_day}
    shared = len(known_a & known_b)

    def pick(x: int | None, y: int | None, fn: Any) -> int | None:
        if x is None:
            return y
        return x if y is None else fn(x, y)

    merged = PurchaseStats(
        order_count=a.order_count + b.order_count,
        total_amount=a.total_amount + b.total_amount,
        first_day=pick(a.first_day, b.first_day, min),
        last_day=pick(a.last_day, b.last_day, max),
        last_at=None
        if a.last_at is None and b.last_at is None
        else max(x for x in (a.last_at, b.last_at) if x is not None),
        purchase_days=a.purchase_days + b.purchase_days - shared,
        recent_days=a.recent_days | b.recent_days,
    )
    _forget_old_days(merged)
    return merged


def recency_days(stats: PurchaseStats, *, as_of: float) -> float | None:
    """Days since the last purchase, or None for a customer who never bought."""
    if stats.last_at is None:
        return None
    return max(0.0, (as_of - stats.last_at) / DAY_S)
