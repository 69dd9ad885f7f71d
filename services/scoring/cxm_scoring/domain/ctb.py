"""CTB: a customer's affinity to categories, tastes (style, colour, size) and brands.

Each purchased item adds its quantity to the item's category, brand and taste values, decayed
exponentially with a half-life (``HALF_LIFE_DAYS``, 90 days), so last month's purchases weigh
more than last year's: what a customer likes drifts. Affinity is count-based (quantity), not
spend-based, so one expensive item does not swamp the taste picture; the share of a value is
its score over the dimension's total.

Decay is "forward decay" (Cormode et al. 2009): a purchase at time t is stored with weight
``quantity * 2 ** ((t - landmark) / half_life)`` against a per-customer landmark time. Scores
of one customer are then all comparable without touching each entry on every event (O(1) per
item), the decay factor is applied only when read, and late events are handled exactly. The
landmark moves forward (rescaling every entry once) before the weights could overflow.

At most ``MAX_VALUES_PER_DIMENSION`` values are kept per dimension; past that the weakest is
dropped. Only then is merging not exactly associative (and floating-point sums are equal to
rounding, not bit-for-bit).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cxm_scoring.domain.errors import InvalidPurchaseError

HALF_LIFE_DAYS = 90.0
MAX_VALUES_PER_DIMENSION = 100
DIMENSIONS = ("category", "brand", "style", "colour", "size")
# Item keys that feed a dimension; US spelling accepted because SDKs send it.
_ITEM_KEYS: dict[str, tuple[str, ...]] = {
    "category": ("category",),
    "brand": ("brand",),
    "style": ("style",),
    "colour": ("colour", "color"),
    "size": ("size",),
}
_DAY_S = 86_400.0
# Move the landmark before weights reach 2**200: far from overflow, cheap to check.
_MAX_EXPONENT = 200.0


@dataclass(slots=True)
class AffinityState:
    landmark: float | None = None  # seconds since epoch; None until the first item
    half_life_days: float = HALF_LIFE_DAYS
    weights: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "landmark": self.landmark,
            "half_life_days": self.half_life_days,
            "weights": {d: dict(v) for d, v in self.weights.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AffinityState:
        return cls(
            landmark=data["landmark"],
            half_life_days=float(data["half_life_days"]),
            weights={d: {k: float(w) for k, w in v.items()} for d, v in data["weights"].items()},
        )


@dataclass(frozen=True, slots=True)
class Affinity:
    value: str
    score: float  # decayed quantity as of the read-out time
    share: float  # 0-1 of the dimension's total


def _exponent(state: AffinityState, at: float) -> float:
    assert state.landmark is not None
    return (at - state.landmark) / (state.half_life_days * _DAY_S)


def _rebase(state: AffinityState, landmark: float) -> None:
    """Express every weight against a new landmark."""
    if state.landmark is None:
        state.landmark = landmark
        return
    factor = 2.0 ** ((state.landmark - landmark) / (state.half_life_days * _DAY_S))
    for values in state.weights.values():
        for k in values:
            values[k] *= factor
    state.landmark = landmark


def _cap(values: dict[str, float]) -> None:
    while len(values) > MAX_VALUES_PER_DIMENSION:
        del values[min(values, key=lambda k: (values[k], k))]


def _item_values(item: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    attributes = item.get("attributes")
    sources = (item, attributes) if isinstance(attributes, Mapping) else (item,)
    for dimension, keys in _ITEM_KEYS.items():
        for source in sources:
            raw = next((source[k] for k in keys if source.get(k) is not None), None)
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                raw = f"{raw:g}"  # numeric sizes (shoe size 42, 27.5 cm) are tastes too
            if isinstance(raw, str) and raw.strip():
                yield dimension, raw.strip()
                break


def _quantity(item: Mapping[str, Any]) -> float:
    q = item.get("quantity", 1)
    if isinstance(q, bool) or not isinstance(q, int | float) or not math.isfinite(q):
        raise InvalidPurchaseError(f"items[].quantity: expected a number, got {q!r}")
    return float(q)


def record_items(state: AffinityState, *, items: Iterable[Mapping[str, Any]], at: float) -> None:
    """Add a purchase's items (in place). Items with quantity <= 0 (returns) are skipped."""
    if state.landmark is None:
        state.landmark = at
    if _exponent(state, at) > _MAX_EXPONENT:
        _rebase(state, at)
    scale = 2.0 ** _exponent(state, at)
    for item in items:
        if not isinstance(item, Mapping):
            raise InvalidPurchaseError(f"items[]: expected an object, got {type(item).__name__}")
        quantity = _quantity(item)
        if quantity <= 0:
            continue
        weight = quantity * scale
        for dimension, value in _item_values(item):
            values = state.weights.setdefault(dimension, {})
            values[value] = values.get(value, 0.0) + weight
            if len(values) > MAX_VALUES_PER_DIMENSION:
                _cap(values)


def merge_affinities(a: AffinityState, b: AffinityState) -> AffinityState:
    """Affinities of the merged customer (new object; inputs untouched)."""
    if a.half_life_days != b.half_life_days:
        raise ValueError("cannot merge affinities with different half-lives")
    landmarks = [x.landmark for x in (a, b) if x.landmark is not None]
    merged = AffinityState(half_life_days=a.half_life_days)
    if not landmarks:
        return merged
    merged.landmark = max(landmarks)
    for source in (a, b):
        if source.landmark is None:
            continue
        factor = 2.0 ** ((source.landmark - merged.landmark) / (a.half_life_days * _DAY_S))
        for dimension, values in source.weights.items():
            target = merged.weights.setdefault(dimension, {})
            for k, w in values.items():
                target[k] = target.get(k, 0.0) + w * factor
    for values in merged.weights.values():
        _cap(values)
    return merged


def top_affinities(
    state: AffinityState, *, dimension: str, as_of: float, k: int = 3
) -> list[Affinity]:
    """The ``k`` strongest values of one dimension, strongest first (ties by name)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension: expected one of {', '.join(DIMENSIONS)}, got {dimension!r}")
    values = state.weights.get(dimension)
    if not values or state.landmark is None:
        return []
    decay = 2.0 ** -_exponent(state, as_of)
    total = sum(values.values())
    ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [Affinity(value=v, score=w * decay, share=w / total) for v, w in ranked]


def ctb_profile(state: AffinityState, *, as_of: float, k: int = 3) -> dict[str, list[Affinity]]:
    """Top ``k`` of every dimension the customer has data for."""
    return {
        d: top_affinities(state, dimension=d, as_of=as_of, k=k)
        for d in DIMENSIONS
        if state.weights.get(d)
    }
