"""Identifiers as the graph stores them: a type, a keyed hash and a masked display form.

The join key is HMAC-SHA256 over `type:normalised value` with a secret from settings, so the
identity tables never hold a raw email or phone number and a leaked table cannot be reversed
with a dictionary of common addresses without the key. The type is part of the hashed text
so the same string under two types (a loyalty number that equals a user id) never collides.
"""

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cxm_profile.identity.errors import InvalidIdentifierValue
from cxm_profile.identity.normalisers import Normaliser, mask, normalise
from cxm_profile.identity.rules import ResolutionRules

# An identifier given by its keyed hash, as "<type>:<hmac hex>" under this reserved type: what
# the profile service puts on the events it emits itself (experiment exposures), so they
# resolve to the customer with no raw email or phone on the topic. Channel systems cannot send
# it (ingest accepts only the known types), and no configured type can be named like it
# (type names are lower_snake_case, without a colon).
KEYED_TYPE = "cxm:keyed"
_KEYED_VALUE = re.compile(r"^([a-z][a-z0-9_]{0,63}):([0-9a-f]{64})$")


def keyed(identifier_type: str, key: str) -> dict[str, str]:
    """The `identifiers` of an event that names an identifier by its key, not its value."""
    return {KEYED_TYPE: f"{identifier_type}:{key}"}


@dataclass(frozen=True, slots=True)
class Identifier:
    type: str
    key: str
    masked: str


@dataclass(frozen=True, slots=True)
class IgnoredIdentifier:
    """An identifier the event carried but resolution did not use, and why (no raw value)."""

    type: str
    masked: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedIdentifiers:
    accepted: tuple[Identifier, ...]
    ignored: tuple[IgnoredIdentifier, ...]


def identifier_key(*, identifier_type: str, normalised: str, secret: bytes) -> str:
    message = f"{identifier_type}:{normalised}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def parse_identifiers(
    raw: Mapping[str, object], *, rules: ResolutionRules, secret: bytes
) -> ParsedIdentifiers:
    """Normalise, block-check and hash an event's `identifiers` object."""
    if not secret:
        raise ValueError("the identifier hashing secret must not be empty")
    accepted: list[Identifier] = []
    ignored: list[IgnoredIdentifier] = []
    for identifier_type, value in raw.items():
        if value is None:
            continue
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str):
            ignored.append(IgnoredIdentifier(identifier_type, "***", "not a string"))
            continue
        if identifier_type == KEYED_TYPE:
            if (match := _KEYED_VALUE.match(text)) and match[1] in rules.types:
                accepted.append(Identifier(match[1], match[2], "***"))
            else:
                ignored.append(IgnoredIdentifier(identifier_type, "***", "not <type>:<key>"))
            continue
        rule = rules.types.get(identifier_type)
        if rule is None:
            ignored.append(
                IgnoredIdentifier(
                    identifier_type,
                    mask(text, normaliser=Normaliser.TRIM),
                    "unknown identifier type",
                )
            )
            continue
        if text.strip().lower() in rules.blocked_everywhere:
            ignored.append(IgnoredIdentifier(identifier_type, "***", "blocked placeholder value"))
            continue
        try:
            normalised = normalise(
                text, normaliser=rule.normaliser, default_region=rules.default_region
            )
        except InvalidIdentifierValue as error:
            masked = mask(text.strip(), normaliser=Normaliser.TRIM)
            ignored.append(IgnoredIdentifier(identifier_type, masked, error.reason))
            continue
        masked = mask(normalised, normaliser=rule.normaliser)
        if rules.is_blocked(identifier_type, normalised):
            ignored.append(IgnoredIdentifier(identifier_type, masked, "blocked value"))
            continue
        key = identifier_key(identifier_type=identifier_type, normalised=normalised, secret=secret)
        accepted.append(Identifier(identifier_type, key, masked))
    accepted.sort(key=lambda identifier: rules.rank(identifier.type))
    return ParsedIdentifiers(tuple(accepted), tuple(ignored))
