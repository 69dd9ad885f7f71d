"""The per-customer experience state kept in the ``experience_by_customer`` table.

Pure data with a compact JSON form (``to_dict`` / ``from_dict``); no I/O.

Idempotency ("an event already applied is skipped") rests on ``applied_ids``: the last
``APPLIED_IDS_KEPT`` (256) event ids applied, newest last. A redelivery by Kafka after a crash
(the table changelog already had the update, the consumer offset was not yet committed) and
the same touchpoint republished upstream (the profile worker is at-least-once too) both trail
the original by at most one uncommitted batch (seconds); a customer does not produce 256
touchpoints in that time, and ingest already drops client retries by ``event_id``.

``offsets`` (per source, topic kind + partition, the highest offset applied to this customer)
is kept for diagnosis only: an event below the mark is applied if its id is new (and counted
as reordered). Skipping by the mark would assume every partition is delivered in order, which
faust does not guarantee around rebalances, and would silently drop events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxm_scoring.domain.ctb import AffinityState
from cxm_scoring.domain.purchases import PurchaseStats
from cxm_scoring.domain.survey import SurveyState

APPLIED_IDS_KEPT = 256
# Rolling sentiment: the newest texts within SENTIMENT_WINDOW_S, at most SENTIMENT_KEPT.
SENTIMENT_KEPT = 20
SENTIMENT_WINDOW_S = 90 * 86_400.0
# Support contacts and failed deliveries count within a 30-day window (bounded lists).
RECENT_WINDOW_S = 30 * 86_400.0
CONTACTS_KEPT = 50
FAILED_DELIVERIES_KEPT = 20
# Merges remembered on the winner (idempotent imports, erasure fan-out).
MERGES_KEPT = 100


@dataclass(slots=True)
class ExperienceState:
    customer_id: str
    survey: SurveyState = field(default_factory=SurveyState)
    purchases: PurchaseStats = field(default_factory=PurchaseStats)
    affinity: AffinityState = field(default_factory=AffinityState)
    # [occurred_at, score], ascending by (time, score)
    sentiment: list[list[float]] = field(default_factory=list)
    last_negative_at: float | None = None
    # [occurred_at, reason], ascending
    contacts: list[list[Any]] = field(default_factory=list)
    failed_deliveries: list[float] = field(default_factory=list)
    last_churn_risk: float | None = None
    segments: list[str] = field(default_factory=list)
    events_applied: int = 0
    last_event_at: float | None = None  # newest occurred_at applied: the state's "as of"
    applied_ids: list[str] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)
    # [merge_id, loser_id] of the customers merged into this one
    merged_from: list[list[str]] = field(default_factory=list)
    partition: int | None = None  # partition of the last event (base statistics per partition)

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "survey": self.survey.to_dict(),
            "purchases": self.purchases.to_dict(),
            "affinity": self.affinity.to_dict(),
            "sentiment": self.sentiment,
            "last_negative_at": self.last_negative_at,
            "contacts": self.contacts,
            "failed_deliveries": self.failed_deliveries,
            "last_churn_risk": self.last_churn_risk,
            "segments": self.segments,
            "events_applied": self.events_applied,
            "last_event_at": self.last_event_at,
            "applied_ids": self.applied_ids,
            "offsets": self.offsets,
            "merged_from": self.merged_from,
            "partition": self.partition,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperienceState:
        return cls(
            customer_id=data["customer_id"],
            survey=SurveyState.from_dict(data["survey"]),
            purchases=PurchaseStats.from_dict(data["purchases"]),
            affinity=AffinityState.from_dict(data["affinity"]),
            sentiment=[list(s) for s in data["sentiment"]],
            last_negative_at=data["last_negative_at"],
            contacts=[list(c) for c in data["contacts"]],
            failed_deliveries=list(data["failed_deliveries"]),
            last_churn_risk=data["last_churn_risk"],
            segments=list(data["segments"]),
            events_applied=int(data["events_applied"]),
            last_event_at=data["last_event_at"],
            applied_ids=list(data["applied_ids"]),
            offsets=dict(data["offsets"]),
            merged_from=[list(m) for m in data["merged_from"]],
            partition=data.get("partition"),
        )


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What stays under a customer id that no longer has its own state.

    ``merged_into``: the customer was merged into another; ``exported`` is its state as it
    was handed over (re-sent if the hand-over is redelivered; restored on unmerge).
    ``erased``: the customer was erased; events for it are refused, nothing else is kept.
    """

    merged_into: str | None = None
    merge_id: str | None = None
    exported: Mapping[str, Any] | None = None
    erased: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "tombstone": True,
            "merged_into": self.merged_into,
            "merge_id": self.merge_id,
            "exported": self.exported,
            "erased": self.erased,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tombstone:
        return cls(
            merged_into=data["merged_into"],
            merge_id=data["merge_id"],
            exported=data["exported"],
            erased=bool(data["erased"]),
        )


def load_entry(data: Mapping[str, Any]) -> ExperienceState | Tombstone:
    if data.get("tombstone"):
        return Tombstone.from_dict(data)
    return ExperienceState.from_dict(data)
