"""What the insights count, as data: funnels (ordered steps), key drivers (touchpoints that may
move the next NPS/CSAT) and the experiment settings. Loaded once (YAML, ``CXM_INSIGHTS_CONFIG``;
the default is ``default.yaml`` beside this module) and checked up front: a malformed entry
raises ``InsightsConfigError`` naming it (``funnels[0].steps[2].match[0].properties.ces``)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cxm_scoring.domain.errors import ScoringDomainError
from cxm_shared.events import ResolvedTouchpoint

DEFAULT_PATH = Path(__file__).with_name("default.yaml")
DAY_S = 86_400.0

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class InsightsConfigError(ScoringDomainError):
    def __init__(self, *, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


Test = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Alternative:
    types: frozenset[str] | None
    touchpoints: frozenset[str] | None
    channels: frozenset[str] | None
    properties: tuple[tuple[str, Test], ...]

    def matches(self, event: ResolvedTouchpoint) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        if self.touchpoints is not None and event.touchpoint not in self.touchpoints:
            return False
        if self.channels is not None and event.channel not in self.channels:
            return False
        props = event.properties
        return all(name in props and test(props[name]) for name, test in self.properties)


@dataclass(frozen=True, slots=True)
class Matcher:
    alternatives: tuple[Alternative, ...]

    def matches(self, event: ResolvedTouchpoint) -> bool:
        return any(a.matches(event) for a in self.alternatives)


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    matcher: Matcher


@dataclass(frozen=True, slots=True)
class Funnel:
    name: str
    description: str
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Driver:
    name: str
    description: str
    matcher: Matcher


@dataclass(frozen=True, slots=True)
class ExperimentSettings:
    window_s: float = 14 * DAY_S
    exposure_types: frozenset[str] = frozenset({"experiment_exposure"})
    max_per_customer: int = 20
    max_experiments: int = 100


@dataclass(frozen=True)
class InsightsConfig:
    funnels: tuple[Funnel, ...]
    drivers: tuple[Driver, ...]
    experiments: ExperimentSettings

    def funnel(self, name: str) -> Funnel | None:
        return next((f for f in self.funnels if f.name == name), None)

    def drivers_for(self, event_type: str) -> tuple[Driver, ...]:
        """The drivers an event of this type may match (most events match none: checking
        only these keeps the per-event cost small)."""
        index = self.__dict__.get("_by_type")
        if index is None:
            index = {}
            object.__setattr__(self, "_by_type", index)
        found = index.get(event_type)
        if found is None:
            found = tuple(
                d
                for d in self.drivers
                if any(a.types is None or event_type in a.types for a in d.matcher.alternatives)
            )
            if len(index) < 1000:  # event types are open-ended (custom names): bounded
                index[event_type] = found
        return found


def _names(value: Any, *, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise InsightsConfigError(where=where, problem="must be a name or a list of names")
    return frozenset(items)


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _same_kind(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    number = int | float
    return (isinstance(a, number) and isinstance(b, number)) or type(a) is type(b)


def _test(spec: Any, *, where: str) -> Test:
    if isinstance(spec, list):
        if not spec or not all(_scalar(v) for v in spec):
            raise InsightsConfigError(where=where, problem="a list must hold scalar values")
        members = list(spec)
        return lambda v: any(_same_kind(v, m) and v == m for m in members)
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise InsightsConfigError(where=where, problem="one operator per property")
        ((op, value),) = spec.items()
        if op == "in":
            return _test(value, where=f"{where}.in")
        compare = _OPS.get(op)
        if compare is None:
            raise InsightsConfigError(
                where=where, problem=f"unknown operator {op!r}; one of {[*_OPS, 'in']}"
            )
        if not _scalar(value):
            raise InsightsConfigError(where=f"{where}.{op}", problem="must be a scalar")
        return lambda v: _same_kind(v, value) and compare(v, value)
    if _scalar(spec):
        return lambda v: _same_kind(v, spec) and v == spec
    raise InsightsConfigError(where=where, problem="must be a value, a list or {op: value}")


def _matcher(spec: Any, *, where: str) -> Matcher:
    if isinstance(spec, dict):
        spec = [spec]
    if not isinstance(spec, list) or not spec:
        raise InsightsConfigError(where=where, problem="must be a non-empty list of alternatives")
    alternatives = []
    for i, alt in enumerate(spec):
        at = f"{where}[{i}]"
        if not isinstance(alt, dict):
            raise InsightsConfigError(where=at, problem="must be a mapping")
        unknown = set(alt) - {"type", "touchpoint", "channel", "properties"}
        if unknown:
            raise InsightsConfigError(where=at, problem=f"unknown keys {sorted(unknown)}")
        if not {"type", "touchpoint"} & set(alt):
            raise InsightsConfigError(where=at, problem="needs 'type' or 'touchpoint'")
        props = alt.get("properties") or {}
        if not isinstance(props, dict):
            raise InsightsConfigError(where=f"{at}.properties", problem="must be a mapping")
        alternatives.append(
            Alternative(
                types=_names(alt.get("type"), where=f"{at}.type"),
                touchpoints=_names(alt.get("touchpoint"), where=f"{at}.touchpoint"),
                channels=_names(alt.get("channel"), where=f"{at}.channel"),
                properties=tuple(
                    (str(k), _test(v, where=f"{at}.properties.{k}")) for k, v in props.items()
                ),
            )
        )
    return Matcher(tuple(alternatives))


def _name(entry: Mapping[str, Any], *, where: str, seen: set[str]) -> str:
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise InsightsConfigError(where=f"{where}.name", problem="must be 1-64 characters")
    if name in seen:
        raise InsightsConfigError(where=f"{where}.name", problem=f"duplicate name {name!r}")
    seen.add(name)
    return name


def _entries(data: Mapping[str, Any], key: str) -> list[Any]:
    entries = data.get(key) or []
    if not isinstance(entries, list):
        raise InsightsConfigError(where=key, problem="must be a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InsightsConfigError(where=f"{key}[{i}]", problem="must be a mapping")
    return entries


def compile_insights_config(data: Any) -> InsightsConfig:
    if not isinstance(data, dict):
        raise InsightsConfigError(where="(root)", problem="must be a mapping")
    funnels = []
    funnel_names: set[str] = set()
    for i, entry in enumerate(_entries(data, "funnels")):
        where = f"funnels[{i}]"
        name = _name(entry, where=where, seen=funnel_names)
        raw_steps = entry.get("steps")
        if not isinstance(raw_steps, list) or len(raw_steps) < 2:
            raise InsightsConfigError(where=f"{where}.steps", problem="needs at least two steps")
        steps, step_names = [], set[str]()
        for j, step in enumerate(raw_steps):
            at = f"{where}.steps[{j}]"
            if not isinstance(step, dict):
                raise InsightsConfigError(where=at, problem="must be a mapping")
            step_name = _name(step, where=at, seen=step_names)
            steps.append(Step(step_name, _matcher(step.get("match"), where=f"{at}.match")))
        funnels.append(Funnel(name, str(entry.get("description", "")), tuple(steps)))
    drivers = []
    driver_names: set[str] = set()
    for i, entry in enumerate(_entries(data, "drivers")):
        where = f"drivers[{i}]"
        name = _name(entry, where=where, seen=driver_names)
        matcher = _matcher(entry.get("match"), where=f"{where}.match")
        drivers.append(Driver(name, str(entry.get("description", "")), matcher))
    if len(drivers) > 16:
        raise InsightsConfigError(where="drivers", problem="at most 16 drivers")
    exp = data.get("experiments") or {}
    if not isinstance(exp, dict):
        raise InsightsConfigError(where="experiments", problem="must be a mapping")
    window = exp.get("window_days", 14)
    if not isinstance(window, int | float) or isinstance(window, bool) or window <= 0:
        raise InsightsConfigError(where="experiments.window_days", problem="must be > 0")
    limits = {}
    for key, default in (("max_per_customer", 20), ("max_experiments", 100)):
        value = exp.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InsightsConfigError(where=f"experiments.{key}", problem="must be an integer >= 1")
        limits[key] = value
    types = _names(exp.get("exposure_types", ["experiment_exposure"]), where="experiments.types")
    settings = ExperimentSettings(
        window_s=float(window) * DAY_S, exposure_types=types or frozenset(), **limits
    )
    return InsightsConfig(tuple(funnels), tuple(drivers), settings)


def load_insights_config(path: str | Path | None = None) -> InsightsConfig:
    file = Path(path) if path else DEFAULT_PATH
    return compile_insights_config(yaml.safe_load(file.read_text()))


def experiment_of(event: ResolvedTouchpoint) -> tuple[str, str] | None:
    """(experiment id, variant) an exposure event names, from its properties (the native
    contract) or ``context.experiment`` (Segment's shape); None when it names none."""
    props = event.properties
    exp_id, variant = props.get("experiment_id"), props.get("variant")
    if not (isinstance(exp_id, str) and isinstance(variant, str)):
        ctx = event.context.get("experiment")
        if not isinstance(ctx, dict):
            return None
        exp_id, variant = ctx.get("id"), ctx.get("variant")
    if isinstance(exp_id, str) and isinstance(variant, str) and exp_id and variant:
        return exp_id[:64], variant[:64]
    return None


def names_of(items: Sequence[Step] | Sequence[Driver]) -> list[str]:
    return [item.name for item in items]
