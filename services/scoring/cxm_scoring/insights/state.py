"""One customer's insight state (table ``insights_by_customer``) and its contribution to the
base-wide sufficient statistics. Pure: no Kafka, no clock.

- funnels: per funnel, how many steps the customer has completed in order (strict: a step
  counts only after the one before it, in the order the events are applied);
- drivers: the drivers seen since the previous survey answer; each survey answer with an NPS
  or CSAT adds one observation (y = the score, x = those drivers), kept as
  (driver pattern -> n, sum y, sum y^2) so a regression over the whole base is exact;
- experiments: per experiment the first variant the customer was exposed to, when, the
  segments at that moment, and the outcomes within the window (converted, revenue, first
  NPS / CSAT after exposure, latest churn risk).

``contribution`` maps a state to what it adds to the aggregates; the worker keeps the
aggregates current by subtracting a customer's old contribution and adding the new one, and
a rescan of the table (``contribution`` of every state) gives exactly the same numbers.

Idempotency: an event at or below the per-source offset mark, or with an event id among the
last ``IDS_KEPT`` that changed the state, is skipped (the same scheme as the experience state).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxm_scoring.insights.config import InsightsConfig, experiment_of
from cxm_shared.events import ResolvedTouchpoint

IDS_KEPT = 64
ALL = "all"
METRICS = ("nps", "csat")
_SCALES = {"nps": (0, 10), "csat": (1, 5)}
# experiment statistics vector: exposed, converted, revenue sum, revenue sum of squares, then
# (n, sum, sum of squares) for NPS, CSAT and churn risk
EXPOSED, CONVERTED, REVENUE, REVENUE_SQ = 0, 1, 2, 3
OUTCOME_AT = {"nps": 4, "csat": 7, "churn_risk": 10}
EXPERIMENT_WIDTH = 13

Key = tuple[str, ...]
Aggregate = dict[Key, list[float]]


@dataclass(slots=True)
class CustomerInsights:
    partition: int | None = None
    segments: list[str] = field(default_factory=list)
    funnels: dict[str, int] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # driver names, sorted
    # metric -> driver pattern ("a|b", "" for none) -> [n, sum, sum of squares]
    observations: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # experiment id -> {v: variant, t: exposed at, seg: segments, cv, rev, nps, csat, churn}
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "p": self.partition,
            "seg": self.segments,
            "f": self.funnels,
            "d": self.pending,
            "o": self.observations,
            "x": self.experiments,
            "off": self.offsets,
            "ids": self.ids,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CustomerInsights:
        return cls(
            partition=data.get("p"),
            segments=list(data.get("seg", ())),
            funnels=dict(data.get("f", {})),
            pending=list(data.get("d", ())),
            observations={m: dict(v) for m, v in data.get("o", {}).items()},
            experiments={k: dict(v) for k, v in data.get("x", {}).items()},
            offsets=dict(data.get("off", {})),
            ids=list(data.get("ids", ())),
        )


def _score(value: Any, metric: str) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high = _SCALES[metric]
    return float(value) if low <= value <= high else None


def _amount(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value < 1e12 else None


def apply_event(
    state: CustomerInsights,
    event: ResolvedTouchpoint,
    *,
    config: InsightsConfig,
    source: str | None = None,
    offset: int | None = None,
    churn_risk: float | None = None,
) -> bool:
    """Apply one event in place; True when the state changed."""
    if source is not None and offset is not None and offset <= state.offsets.get(source, -1):
        return False
    if event.event_id in state.ids:
        return False
    changed = False
    counted = False  # changed in a way a redelivery must not repeat
    for funnel in config.funnels:
        reached = state.funnels.get(funnel.name, 0)
        if reached < len(funnel.steps) and funnel.steps[reached].matcher.matches(event):
            state.funnels[funnel.name] = reached + 1
            changed = True
    seen = [d.name for d in config.drivers_for(event.type) if d.matcher.matches(event)]
    if seen and not set(seen) <= set(state.pending):
        state.pending = sorted(set(state.pending) | set(seen))
        changed = True
    at = event.occurred_at.timestamp()
    props = event.properties
    scores: dict[str, float] = {}
    if event.type == "survey_response":
        for metric in METRICS:
            value = _score(props.get(metric), metric)
            if value is not None:
                scores[metric] = value
        if scores:
            pattern = "|".join(state.pending)
            for metric, y in scores.items():
                cell = state.observations.setdefault(metric, {}).setdefault(pattern, [0, 0, 0])
                cell[0] += 1
                cell[1] += y
                cell[2] += y * y
            state.pending = []
            changed = counted = True
    exps = config.experiments
    if event.type in exps.exposure_types:
        named = experiment_of(event)
        if (
            named is not None
            and named[0] not in state.experiments
            and len(state.experiments) < exps.max_per_customer
        ):
            state.experiments[named[0]] = {
                "v": named[1],
                "t": at,
                "seg": list(state.segments),
                "cv": 0,
                "rev": 0.0,
                "nps": None,
                "csat": None,
                "churn": None,
            }
            changed = True
    amount = _amount(props.get("amount")) if event.type == "purchase" else None
    churn = round(churn_risk, 3) if churn_risk is not None else None
    for exp in state.experiments.values():
        if not exp["t"] <= at <= exp["t"] + exps.window_s:
            continue
        if amount is not None:
            exp["cv"] = 1
            exp["rev"] += amount
            changed = counted = True
        for metric, y in scores.items():
            if exp[metric] is None:
                exp[metric] = y
                changed = True
        if churn is not None and exp["churn"] != churn:
            exp["churn"] = churn
            changed = True
    if changed:
        if source is not None and offset is not None:
            state.offsets[source] = max(offset, state.offsets.get(source, -1))
        if counted:
            state.ids.append(event.event_id)
            del state.ids[:-IDS_KEPT]
    return changed


def set_segments(state: CustomerInsights, segments: Sequence[str]) -> bool:
    new = sorted(segments)
    if new == state.segments:
        return False
    state.segments = new
    return True


def experiment_vector(exp: Mapping[str, Any]) -> list[float]:
    vec = [0.0] * EXPERIMENT_WIDTH
    vec[EXPOSED] = 1.0
    vec[CONVERTED] = float(exp["cv"])
    rev = float(exp["rev"])
    vec[REVENUE], vec[REVENUE_SQ] = rev, rev * rev
    for name, at in OUTCOME_AT.items():
        value = exp["churn" if name == "churn_risk" else name]
        if value is not None:
            vec[at], vec[at + 1], vec[at + 2] = 1.0, float(value), float(value) ** 2
    return vec


def contribution(state: CustomerInsights, config: InsightsConfig) -> Aggregate:
    """What this customer adds to the base-wide statistics."""
    out: Aggregate = {}
    groups = (ALL, *state.segments)
    for funnel in config.funnels:
        reached = min(state.funnels.get(funnel.name, 0), len(funnel.steps))
        if reached:
            counts = [1.0 if i < reached else 0.0 for i in range(len(funnel.steps))]
            for group in groups:
                out["f", funnel.name, group] = counts
    for metric, patterns in state.observations.items():
        for pattern, cell in patterns.items():
            out["d", metric, pattern] = [float(c) for c in cell]
    for exp_id, exp in state.experiments.items():
        vec = experiment_vector(exp)
        for group in (ALL, *exp["seg"]):
            out["x", exp_id, exp["v"], group] = vec
    return out


def add_into(total: Aggregate, part: Mapping[Key, Sequence[float]], sign: float = 1.0) -> None:
    for key, values in part.items():
        cell = total.get(key)
        if cell is None:
            total[key] = [sign * v for v in values]
            continue
        if len(cell) < len(values):  # a funnel grew a step in a new configuration
            cell.extend([0.0] * (len(values) - len(cell)))
        for i, v in enumerate(values):
            cell[i] += sign * v


def merge_aggregates(parts: Iterable[Mapping[Key, Sequence[float]]]) -> Aggregate:
    total: Aggregate = {}
    for part in parts:
        add_into(total, part)
    return total


def encode_aggregate(agg: Mapping[Key, Sequence[float]]) -> list[list[Any]]:
    # Counts that cancelled to (almost) zero are dropped: float sums drift by ~1e-12.
    return [[list(k), list(v)] for k, v in agg.items() if any(abs(x) > 1e-9 for x in v)]


def decode_aggregate(rows: Iterable[Sequence[Any]]) -> Aggregate:
    return {tuple(key): [float(x) for x in values] for key, values in rows}
