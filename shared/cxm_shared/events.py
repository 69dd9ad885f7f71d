"""Messages on the platform's topics: the contract between services.

Values are JSON (UTF-8, via orjson). Every message carries ``schema_version`` so a consumer
can refuse (dead-letter) what it does not understand. Additive changes only: new optional
fields; anything else is a new version.

| topic                     | key          | value                                    |
|---------------------------|--------------|------------------------------------------|
| cx.touchpoints            | ingest's key | :class:`Touchpoint`                      |
| cx.touchpoints.resolved   | customer_id  | :class:`ResolvedTouchpoint`              |
| cx.identity.merges        | customer_id  | :class:`IdentityChange` (merged/unmerged)|
| cx.erasures               | customer_id  | :class:`CustomerErased`                  |
| cx.scores (compacted)     | customer_id  | :class:`ScoreSnapshot` (None = erased)   |
| cx.signals                | customer_id  | :class:`Signal`                          |
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

KNOWN_IDENTIFIER_TYPES = (
    "anonymous_id",
    "device_id",
    "cookie_id",
    "user_id",
    "email",
    "phone",
    "loyalty_id",
)

M = TypeVar("M", bound=BaseModel)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must include a timezone offset")
    return value.astimezone(UTC)


class Touchpoint(Message):
    """A validated, normalised touchpoint event as the ingest service accepted it."""

    event_id: str = Field(min_length=1, max_length=128)
    type: str = Field(min_length=1, max_length=64)
    channel: str = Field(min_length=1, max_length=64)
    touchpoint: str | None = Field(default=None, max_length=128)
    occurred_at: datetime
    received_at: datetime
    source: str = Field(min_length=1, max_length=64, description="the write key's source")
    identifiers: dict[str, str] = Field(description="identifier type -> raw value")
    traits: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)

    _utc_times = field_validator("occurred_at", "received_at")(_utc)


class ResolvedTouchpoint(Touchpoint):
    """A touchpoint with the customer it belongs to (after identity resolution)."""

    customer_id: str = Field(min_length=1, max_length=64)


class IdentityChange(Message):
    """Two customers were merged (the loser's state moves to the winner) or a merge undone
    (the restored customer's state must be rebuilt or split back)."""

    kind: Literal["merged", "unmerged"]
    merge_id: str
    winner_id: str = Field(description="the surviving customer (merged) / the one split from")
    loser_id: str = Field(description="the absorbed customer (merged) / the one restored")
    reason: str = Field(description="rule and identifier type that joined them; no raw values")
    event_id: str | None = None
    occurred_at: datetime

    _utc_times = field_validator("occurred_at")(_utc)


class CustomerErased(Message):
    """GDPR erasure: every service removes the customer and refuses to re-create it."""

    customer_id: str
    request_id: str
    occurred_at: datetime

    _utc_times = field_validator("occurred_at")(_utc)


class ScoreSnapshot(Message):
    """The latest experience state of one customer (compacted topic, key = customer_id)."""

    customer_id: str
    updated_at: datetime
    events_applied: int = 0
    nps: dict[str, Any] = Field(default_factory=dict)
    csat: dict[str, Any] = Field(default_factory=dict)
    ces: dict[str, Any] = Field(default_factory=dict)
    sentiment: dict[str, Any] = Field(default_factory=dict)
    rfm: dict[str, Any] = Field(default_factory=dict)
    decile: int | None = None
    ctb: dict[str, Any] = Field(default_factory=dict)
    churn_risk: float | None = None
    churn_reasons: list[dict[str, Any]] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)

    _utc_times = field_validator("updated_at")(_utc)


SignalKind = Literal[
    "negative_feedback",
    "detractor",
    "low_csat",
    "high_effort",
    "churn_risk_high",
    "churn_risk_rising",
    "segment_entered",
    "segment_exited",
]


class Signal(Message):
    """Something the alerting service may turn into an alert, with its evidence."""

    signal_id: str = Field(description="deterministic: kind + customer + triggering event")
    kind: SignalKind
    customer_id: str
    occurred_at: datetime
    severity: Literal["info", "warning", "critical"] = "warning"
    labels: dict[str, str] = Field(
        default_factory=dict, description="channel, touchpoint, segment, value_tier, region ..."
    )
    evidence: dict[str, Any] = Field(
        default_factory=dict, description="event_ids, scores, reasons; no raw personal data"
    )

    _utc_times = field_validator("occurred_at")(_utc)


def encode(message: BaseModel) -> bytes:
    return orjson.dumps(message.model_dump(mode="json"))


def decode(model: type[M], raw: bytes) -> M:
    """Parse a message; raises ``pydantic.ValidationError`` (dead-letter it) when malformed."""
    return model.model_validate_json(raw)
