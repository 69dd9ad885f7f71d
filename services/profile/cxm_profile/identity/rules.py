"""Resolution rules: configuration data (a YAML-friendly mapping) validated into one model.

Every rule says how much one kind of evidence may do:

- `types`: each identifier type with its strength (`strong` types can join two known
  customers; `weak` ones, like a device, only follow a customer), its normaliser, how many
  of it one customer may hold (`unique: true` means one), and its own blocked values.
- `priority`: the order in which an event's identifiers decide which customer the event
  belongs to; every strong type ranks above every weak one.
- `blocked_everywhere`: placeholder values SDKs send for "no value" (`null`, `0`, ...).
- `channel_trust`: per `channel` or `channel/touchpoint`; a `low` trust event may attach new
  identifiers to the customer it resolves to but never merges two existing customers.
"""

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Self

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from cxm_profile.identity.errors import InvalidIdentifierValue, InvalidRulesError
from cxm_profile.identity.normalisers import Normaliser, normalise

TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Strength(StrEnum):
    STRONG = "strong"
    WEAK = "weak"


class Trust(StrEnum):
    HIGH = "high"
    LOW = "low"


class TypeRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    strength: Strength
    normaliser: Normaliser = Normaliser.TRIM
    unique: bool = False
    max_per_customer: int | None = Field(default=None, ge=1)
    blocked: frozenset[str] = frozenset()

    @model_validator(mode="after")
    def _unique_means_one(self) -> Self:
        if self.unique and self.max_per_customer not in (None, 1):
            raise ValueError("unique types hold exactly one value; drop max_per_customer")
        return self

    @property
    def limit(self) -> int | None:
        return 1 if self.unique else self.max_per_customer


class ResolutionRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    default_region: str = "JP"
    types: dict[str, TypeRule]
    priority: tuple[str, ...]
    blocked_everywhere: frozenset[str] = frozenset(
        {"", "null", "undefined", "none", "nil", "nan", "0", "-", "n/a", "unknown"}
    )
    channel_trust: dict[str, Trust] = {}
    default_trust: Trust = Trust.HIGH
    _blocked_normalised: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[str] = []
        if self.default_region not in phonenumbers.SUPPORTED_REGIONS:
            problems.append(f"default_region: {self.default_region!r} is not a known region")
        problems += [
            f"types.{name}: type names are lower_snake_case"
            for name in self.types
            if not TYPE_NAME.match(name)
        ]
        if len(set(self.priority)) != len(self.priority):
            problems.append("priority: lists a type twice")
        if missing := sorted(set(self.types) - set(self.priority)):
            problems.append(f"priority: does not rank {missing}")
        if unknown := sorted(set(self.priority) - set(self.types)):
            problems.append(f"priority: ranks types with no rule {unknown}")
        strengths = [self.types[t].strength for t in self.priority if t in self.types]
        first_weak = next(
            (i for i, s in enumerate(strengths) if s is Strength.WEAK), len(strengths)
        )
        if Strength.STRONG in strengths[first_weak:]:
            problems.append("priority: every strong type must rank above every weak type")
        for name, rule in self.types.items():
            blocked: set[str] = set()
            for value in rule.blocked:
                try:
                    blocked.add(
                        normalise(
                            value, normaliser=rule.normaliser, default_region=self.default_region
                        )
                    )
                except InvalidIdentifierValue as error:
                    problems.append(f"types.{name}.blocked: an entry is not valid ({error})")
            # Normalised once here so a configured "03-1234-5678" matches "+81312345678".
            self._blocked_normalised[name] = frozenset(blocked)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def is_blocked(self, identifier_type: str, normalised: str) -> bool:
        return normalised in self._blocked_normalised.get(identifier_type, frozenset())

    def rank(self, identifier_type: str) -> int:
        return self.priority.index(identifier_type)

    def is_strong(self, identifier_type: str) -> bool:
        return self.types[identifier_type].strength is Strength.STRONG

    def limit(self, identifier_type: str) -> int | None:
        return self.types[identifier_type].limit

    def trust_of(self, *, channel: str, touchpoint: str | None) -> Trust:
        """The most specific setting wins: `channel/touchpoint`, then `channel`, then default."""
        if touchpoint and (trust := self.channel_trust.get(f"{channel}/{touchpoint}")):
            return trust
        return self.channel_trust.get(channel, self.default_trust)


DEFAULT_RULES: Mapping[str, Any] = {
    "default_region": "JP",
    "types": {
        "user_id": {"strength": "strong", "unique": True},
        "loyalty_id": {"strength": "strong", "max_per_customer": 2},
        "email": {
            "strength": "strong",
            "normaliser": "email",
            "max_per_customer": 5,
            "blocked": ["test@example.com", "noreply@example.com"],
        },
        "phone": {"strength": "strong", "normaliser": "phone", "max_per_customer": 3},
        "device_id": {"strength": "weak", "max_per_customer": 5},
        "cookie_id": {"strength": "weak", "max_per_customer": 20},
        "anonymous_id": {"strength": "weak", "max_per_customer": 50},
    },
    "priority": [
        "user_id",
        "loyalty_id",
        "email",
        "phone",
        "device_id",
        "cookie_id",
        "anonymous_id",
    ],
    # An agent types what the caller says; a shared tablet is used by many people.
    "channel_trust": {"call_center": "low", "store/tablet": "low"},
}


def load_rules(config: Mapping[str, Any]) -> ResolutionRules:
    """Validate a mapping (e.g. parsed YAML); every problem is listed in one error."""
    try:
        return ResolutionRules.model_validate(config)
    except ValidationError as error:
        lines = [
            f"{'.'.join(str(part) for part in item['loc']) or '<rules>'}: {item['msg']}"
            for item in error.errors()
        ]
        raise InvalidRulesError("invalid resolution rules: " + "; ".join(lines)) from None
