"""Rule-based customer segments, defined as data (YAML-friendly dicts) and checked up front.

A configuration is a list of rules (or ``{"segments": [...]}``, the shape of a YAML file)::

    segments:
      - name: VIP at risk
        description: top-20% spenders likely to leave
        all:
          - {field: decile, op: "<=", value: 2}
          - {field: churn_risk, op: ">=", value: 0.6}
      - name: unhappy
        any:
          - {field: nps_latest, op: "<=", value: 6}
          - {not: {field: csat_mean, op: ">=", value: 3}}

A rule has exactly one of ``all`` / ``any`` (a non-empty list of conditions) or a single
condition under ``when``; conditions nest (``all``, ``any``, ``not``). Operators: ``==``, ``!=``,
``<``, ``<=``, ``>``, ``>=``, ``in``, ``not_in`` and ``exists`` (value true/false). A field
the snapshot lacks (or holds None) fails every test but ``exists: false``: a customer with no
survey answer is not "below 3".

``compile_segment_rules`` validates everything once (field names and kinds, operators, value
types, unique names) and raises ``SegmentConfigError`` naming the entry and the problem; the
compiled rules are plain closures, cheap to evaluate on every event.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cxm_scoring.domain.errors import SegmentConfigError


class FieldKind(StrEnum):
    NUMBER = "number"
    TEXT = "text"


# The customer snapshot the scorer evaluates rules against (see the scoring worker).
SNAPSHOT_FIELDS: Mapping[str, FieldKind] = {
    "decile": FieldKind.NUMBER,
    "churn_risk": FieldKind.NUMBER,
    "p_alive": FieldKind.NUMBER,
    "recency_score": FieldKind.NUMBER,
    "frequency_score": FieldKind.NUMBER,
    "monetary_score": FieldKind.NUMBER,
    "rfm_segment": FieldKind.TEXT,
    "order_count": FieldKind.NUMBER,
    "total_amount": FieldKind.NUMBER,
    "days_since_last_purchase": FieldKind.NUMBER,
    "nps": FieldKind.NUMBER,
    "nps_latest": FieldKind.NUMBER,
    "nps_category": FieldKind.TEXT,
    "csat_mean": FieldKind.NUMBER,
    "csat_latest": FieldKind.NUMBER,
    "ces_mean": FieldKind.NUMBER,
    "ces_latest": FieldKind.NUMBER,
    "sentiment": FieldKind.NUMBER,
    "support_contacts_same_reason": FieldKind.NUMBER,
    "failed_deliveries": FieldKind.NUMBER,
    "top_category": FieldKind.TEXT,
    "top_brand": FieldKind.TEXT,
    "top_style": FieldKind.TEXT,
    "top_colour": FieldKind.TEXT,
    "top_size": FieldKind.TEXT,
}

Snapshot = Mapping[str, Any]
Predicate = Callable[[Snapshot], bool]

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_OPERATORS_BY_KIND: dict[FieldKind, tuple[str, ...]] = {
    FieldKind.NUMBER: (*_COMPARISONS, "in", "not_in", "exists"),
    FieldKind.TEXT: ("==", "!=", "in", "not_in", "exists"),
}
_GROUP_KEYS = ("all", "any", "not")
_CONDITION_KEYS = frozenset({"field", "op", "value"})
_RULE_KEYS = frozenset({"name", "description", "all", "any", "when"})


@dataclass(frozen=True, slots=True)
class SegmentRule:
    name: str
    description: str
    predicate: Predicate = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SegmentChange:
    entered: frozenset[str]
    exited: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.entered or self.exited)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_value(*, where: str, kind: FieldKind, value: object) -> None:
    ok = _is_number(value) if kind is FieldKind.NUMBER else isinstance(value, str)
    if not ok:
        raise SegmentConfigError(where=where, problem=f"expected a {kind.value}, got {value!r}")


def _compile_condition(
    node: Mapping[str, Any], *, where: str, fields: Mapping[str, FieldKind]
) -> Predicate:
    unknown = set(node) - _CONDITION_KEYS
    if unknown:
        raise SegmentConfigError(
            where=where, problem=f"unknown key(s) {', '.join(sorted(unknown))}"
        )
    name = node.get("field")
    if not isinstance(name, str) or name not in fields:
        raise SegmentConfigError(
            where=f"{where}.field",
            problem=f"unknown field {name!r}; known fields: {', '.join(sorted(fields))}",
        )
    kind = fields[name]
    op = node.get("op")
    allowed = _OPERATORS_BY_KIND[kind]
    if op not in allowed:
        raise SegmentConfigError(
            where=f"{where}.op",
            problem=f"operator {op!r} not valid for {kind.value} field {name!r}; "
            f"expected one of {', '.join(allowed)}",
        )
    if "value" not in node:
        raise SegmentConfigError(where=f"{where}.value", problem="missing")
    value = node["value"]

    if op == "exists":
        if not isinstance(value, bool):
            raise SegmentConfigError(
                where=f"{where}.value", problem=f"exists takes true or false, got {value!r}"
            )
        return lambda s: (s.get(name) is not None) is value
    if op in ("in", "not_in"):
        if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
            raise SegmentConfigError(
                where=f"{where}.value", problem=f"{op} takes a non-empty list, got {value!r}"
            )
        for i, v in enumerate(value):
            _check_value(where=f"{where}.value[{i}]", kind=kind, value=v)
        members = frozenset(value)
        if op == "in":
            return lambda s: (v := s.get(name)) is not None and v in members
        return lambda s: (v := s.get(name)) is not None and v not in members
    _check_value(where=f"{where}.value", kind=kind, value=value)
    compare = _COMPARISONS[op]
    return lambda s: (v := s.get(name)) is not None and compare(v, value)


def _compile_node(node: object, *, where: str, fields: Mapping[str, FieldKind]) -> Predicate:
    if not isinstance(node, Mapping):
        raise SegmentConfigError(where=where, problem=f"expected a mapping, got {node!r}")
    groups = [k for k in _GROUP_KEYS if k in node]
    if not groups:
        return _compile_condition(node, where=where, fields=fields)
    if len(node) != 1:
        raise SegmentConfigError(
            where=where, problem=f"a {groups[0]!r} group must be the entry's only key"
        )
    key = groups[0]
    if key == "not":
        inner = _compile_node(node["not"], where=f"{where}.not", fields=fields)
        return lambda s: not inner(s)
    return _compile_group(key, node[key], where=f"{where}.{key}", fields=fields)


def _compile_group(
    key: str, items: object, *, where: str, fields: Mapping[str, FieldKind]
) -> Predicate:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence) or not items:
        raise SegmentConfigError(where=where, problem="expected a non-empty list of conditions")
    parts = tuple(
        _compile_node(item, where=f"{where}[{i}]", fields=fields) for i, item in enumerate(items)
    )
    if key == "all":
        return lambda s: all(p(s) for p in parts)
    return lambda s: any(p(s) for p in parts)


def compile_segment_rules(
    config: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    fields: Mapping[str, FieldKind] = SNAPSHOT_FIELDS,
) -> tuple[SegmentRule, ...]:
    """Validate a rule configuration and compile it; raises ``SegmentConfigError``."""
    if isinstance(config, Mapping):
        if set(config) != {"segments"}:
            raise SegmentConfigError(
                where="<root>", problem="expected a list of rules or a mapping with 'segments'"
            )
        config = config["segments"]
    if isinstance(config, str | bytes) or not isinstance(config, Sequence):
        raise SegmentConfigError(where="segments", problem="expected a list of rules")
    rules: list[SegmentRule] = []
    seen: set[str] = set()
    for i, rule in enumerate(config):
        where = f"segments[{i}]"
        if not isinstance(rule, Mapping):
            raise SegmentConfigError(where=where, problem=f"expected a mapping, got {rule!r}")
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            raise SegmentConfigError(
                where=where, problem=f"unknown key(s) {', '.join(sorted(unknown))}"
            )
        name = rule.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SegmentConfigError(where=f"{where}.name", problem="must be a non-empty string")
        if name in seen:
            raise SegmentConfigError(where=f"{where}.name", problem=f"duplicate name {name!r}")
        seen.add(name)
        description = rule.get("description", "")
        if not isinstance(description, str):
            raise SegmentConfigError(where=f"{where}.description", problem="must be a string")
        bodies = [k for k in ("all", "any", "when") if k in rule]
        if len(bodies) != 1:
            raise SegmentConfigError(
                where=where, problem="needs exactly one of 'all', 'any' or 'when'"
            )
        body = bodies[0]
        if body == "when":
            predicate = _compile_node(rule["when"], where=f"{where}.when", fields=fields)
        else:
            predicate = _compile_group(body, rule[body], where=f"{where}.{body}", fields=fields)
        rules.append(SegmentRule(name=name, description=description, predicate=predicate))
    return tuple(rules)


def evaluate_segments(*, rules: Iterable[SegmentRule], snapshot: Snapshot) -> frozenset[str]:
    """Names of the segments the customer is in."""
    return frozenset(rule.name for rule in rules if rule.predicate(snapshot))


def diff_segments(*, before: frozenset[str], after: frozenset[str]) -> SegmentChange:
    return SegmentChange(entered=after - before, exited=before - after)


def segment_changes(
    *, rules: Iterable[SegmentRule], before: Snapshot, after: Snapshot
) -> SegmentChange:
    """Segments entered and exited between two snapshots of one customer."""
    rules = tuple(rules)
    return diff_segments(
        before=evaluate_segments(rules=rules, snapshot=before),
        after=evaluate_segments(rules=rules, snapshot=after),
    )
