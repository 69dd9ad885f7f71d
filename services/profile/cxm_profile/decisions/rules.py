"""Personalisation rules as configuration data, and the pure decision over them (no I/O).

A YAML file (``CXM_DECISION_RULES_FILE``; the bundled ``default.yaml`` otherwise) names
placements (a home-page banner, an app screen's hero, ...). Each placement has ordered
`rules` — the first whose segment condition holds gives the content — and a `default` for
everyone else, including customers the platform does not know. `experiments` run A/B tests
on a placement for the customers in their eligible segments: each such customer is assigned
one variant by weight, and a variant without content of its own is a control that gets
what the rules give.

Assignment is a deterministic hash of (salt, customer id) — the salt defaults to the
experiment id — so every worker process and every restart gives a customer the same variant,
with no table to keep. The customer id is the *live* one: after a merge, the merged customer
takes the variant of the surviving (oldest) customer, which is the one that has usually been
exposed longest; customers merged away may switch variant once. Change `salt` to reshuffle an
experiment's assignments deliberately.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cxm_profile.errors import ProfileError

DEFAULT_RULES_PATH = Path(__file__).with_name("default.yaml")
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
NAME_PATTERN = re.compile(NAME)


class InvalidDecisionRules(ProfileError):
    """The decision rules file is malformed; the message lists every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Content(_Strict):
    """What the placement shows; `id` names it in exposures and metrics, the rest is free."""

    model_config = ConfigDict(frozen=True, extra="allow")

    id: str = Field(pattern=NAME)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class Condition(_Strict):
    """Every list given must hold: any of `segments_any`, all of `segments_all`, none of
    `segments_none`. An empty condition always holds."""

    segments_any: frozenset[str] = frozenset()
    segments_all: frozenset[str] = frozenset()
    segments_none: frozenset[str] = frozenset()

    def holds(self, segments: Collection[str]) -> bool:
        if self.segments_any and self.segments_any.isdisjoint(segments):
            return False
        if not self.segments_all.issubset(segments):
            return False
        return self.segments_none.isdisjoint(segments)


class Rule(_Strict):
    name: str = Field(pattern=NAME)
    when: Condition = Condition()
    content: Content


class Placement(_Strict):
    channel: str = Field(default="web", min_length=1, max_length=64)
    rules: tuple[Rule, ...] = ()
    default: Content

    @model_validator(mode="after")
    def _unique_rule_names(self) -> Self:
        names = [rule.name for rule in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rules: two rules share a name")
        return self


class Variant(_Strict):
    name: str = Field(pattern=NAME)
    weight: float = Field(gt=0)
    content: Content | None = Field(default=None, description="None: a control (the rules)")


class Experiment(_Strict):
    placement: str
    variants: tuple[Variant, ...] = Field(min_length=2)
    eligible: Condition = Condition()
    salt: str | None = Field(default=None, min_length=1, max_length=128)
    active: bool = True

    @field_validator("variants")
    @classmethod
    def _unique_variant_names(cls, variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
        if len({v.name for v in variants}) != len(variants):
            raise ValueError("two variants share a name")
        return variants


class DecisionRules(_Strict):
    placements: dict[str, Placement] = Field(min_length=1)
    experiments: dict[str, Experiment] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = [
            f"{kind}.{name}: names are letters, digits and _ . : - (at most 64)"
            for kind, names in (("placements", self.placements), ("experiments", self.experiments))
            for name in names
            if not NAME_PATTERN.fullmatch(name)
        ]
        for experiment_id, experiment in self.experiments.items():
            if experiment.placement not in self.placements:
                problems.append(
                    f"experiments.{experiment_id}.placement: no placement {experiment.placement!r}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def experiments_on(self, placement: str) -> list[tuple[str, Experiment]]:
        return [
            (experiment_id, experiment)
            for experiment_id, experiment in self.experiments.items()
            if experiment.active and experiment.placement == placement
        ]


def load_rules(config: Mapping[str, Any]) -> DecisionRules:
    """Validate a mapping (parsed YAML); every problem is listed in one error."""
    try:
        return DecisionRules.model_validate(config)
    except ValidationError as error:
        lines = [
            f"{'.'.join(str(part) for part in item['loc']) or '<rules>'}: {item['msg']}"
            for item in error.errors()
        ]
        raise InvalidDecisionRules("invalid decision rules: " + "; ".join(lines)) from None


def load_rules_file(path: Path | None) -> DecisionRules:
    source = path or DEFAULT_RULES_PATH
    return load_rules(yaml.safe_load(source.read_text()) or {})


# -- assignment ---------------------------------------------------------------------------


def bucket(salt: str, customer_id: str) -> float:
    """A point in [0, 1) fixed by (salt, customer id): the same in every process and run
    (sha256, not Python's per-process randomised hash())."""
    digest = hashlib.sha256(f"{salt}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiment_id: str, experiment: Experiment, customer_id: str) -> Variant:
    """The variant of `customer_id`: the weights cut [0, 1) into consecutive ranges."""
    point = bucket(experiment.salt or experiment_id, customer_id)
    total = sum(v.weight for v in experiment.variants)
    edge = 0.0
    for variant in experiment.variants:
        edge += variant.weight / total
        if point < edge:
            return variant
    return experiment.variants[-1]  # float rounding at the top edge


# -- decision -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    placement: str
    content: Content
    source: str  # "experiment", "rule" or "default"
    rule: str | None = None  # the rule that gave the content (a control variant: its rule)
    experiment_id: str | None = None
    variant: str | None = None


class UnknownPlacement(ProfileError):
    pass


def decide(
    rules: DecisionRules,
    *,
    placement: str,
    customer_id: str | None,
    segments: Collection[str],
) -> Decision:
    """The content for a customer (None: not known) in `segments` at `placement`.

    Experiments on the placement come first (the first active one whose eligibility holds;
    only known customers take part, since assignment is per customer), then the ordered
    rules, then the placement's default.
    """
    spot = rules.placements.get(placement)
    if spot is None:
        raise UnknownPlacement(placement)
    by_rules = _by_rules(placement, spot, segments)
    if customer_id is None:
        return by_rules
    for experiment_id, experiment in rules.experiments_on(placement):
        if not experiment.eligible.holds(segments):
            continue
        variant = assign(experiment_id, experiment, customer_id)
        return Decision(
            placement=placement,
            content=variant.content or by_rules.content,
            source="experiment",
            rule=None if variant.content else by_rules.rule,
            experiment_id=experiment_id,
            variant=variant.name,
        )
    return by_rules


def _by_rules(placement: str, spot: Placement, segments: Collection[str]) -> Decision:
    for rule in spot.rules:
        if rule.when.holds(segments):
            return Decision(placement, rule.content, "rule", rule=rule.name)
    return Decision(placement, spot.default, "default")
