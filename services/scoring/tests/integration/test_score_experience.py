"""A stream of surveys, feedback and purchases on the real broker yields the expected state,
snapshots and signals; a redelivered event changes nothing; poison goes to the DLQ."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from cxm_scoring.domain.purchases import utc_day
from cxm_shared.events import ResolvedTouchpoint, ScoreSnapshot, Signal, decode
from cxm_shared.topics import Topics

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def touchpoint(
    customer: str, event_id: str, type_: str, minutes: int, **props: Any
) -> ResolvedTouchpoint:
    return ResolvedTouchpoint(
        event_id=event_id,
        type=type_,
        channel="web" if type_ != "support_contact" else "call_center",
        touchpoint="checkout",
        occurred_at=T0 + timedelta(minutes=minutes),
        received_at=T0 + timedelta(minutes=minutes),
        source="test",
        identifiers={"user_id": "u"},
        properties=props,
        context={"locale": "en-US"},
        customer_id=customer,
    )


def latest_snapshots(records: list[tuple[bytes | None, bytes | None]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in records:
        assert key is not None
        out[key.decode()] = None if value is None else decode(ScoreSnapshot, value)
    return out


def applied_counts(records: list[tuple[bytes | None, bytes | None]], customer: str) -> list[int]:
    return [
        decode(ScoreSnapshot, v).events_applied
        for k, v in records
        if k == customer.encode() and v is not None
    ]


async def test_stream_yields_state_and_signals_and_redelivery_changes_nothing(
    scoring_settings, run_scoring, publish, read_until, topics: Topics
) -> None:
    a, b = "cust-a", "cust-b"
    events = [
        touchpoint(a, "e1", "survey_response", 0, nps=3, csat=2, ces=5),
        touchpoint(a, "e2", "survey_response", 10, nps=9, csat=5, ces=2),
        touchpoint(a, "e3", "feedback", 20, comment="Terrible service, the app keeps crashing"),
        touchpoint(
            a,
            "e4",
            "purchase",
            30,
            order_id="o1",
            amount=120.0,
            items=[{"sku": "s1", "category": "shoes", "brand": "acme", "quantity": 2}],
        ),
        touchpoint(
            a,
            "e5",
            "purchase",
            60 * 24 * 3,
            order_id="o2",
            amount=80.0,
            items=[{"sku": "s2", "category": "bags", "brand": "acme", "quantity": 1}],
        ),
        touchpoint(b, "e6", "survey_response", 5, nps=10, csat=4),
        touchpoint(b, "e7", "review", 6, comment="Great quality, I love it"),
    ]
    async with run_scoring(scoring_settings):
        for e in events:
            await publish(topics.touchpoints_resolved, e.customer_id, e)
        # Poison: not a touchpoint at all, and an out-of-scale NPS.
        await publish(topics.touchpoints_resolved, a, b"{not json")
        await publish(
            topics.touchpoints_resolved, a, touchpoint(a, "bad", "survey_response", 1, nps=11)
        )

        def all_scored(records: list) -> bool:
            snaps = latest_snapshots(records)
            return (
                a in snaps
                and snaps[a].events_applied == 5
                and b in snaps
                and snaps[b].events_applied == 2
            )

        scores = await read_until(topics.scores, all_scored)
        snaps = latest_snapshots(scores)
        sa, sb = snaps[a], snaps[b]
        # NPS: one detractor (3), one promoter (9) -> 0; CSAT mean 3.5, top-2 share 0.5.
        assert sa.nps["lifetime"] == 0.0 and sa.nps["responses"] == 2
        assert sa.nps["latest"]["score"] == 9
        assert sa.csat["mean"] == 3.5 and sa.csat["top2_share"] == 0.5
        assert sa.ces["mean"] == 3.5 and sa.ces["high_effort_share"] == 0.5
        assert sa.sentiment["samples"] == 1 and sa.sentiment["rolling"] < 0
        assert sa.rfm["order_count"] == 2 and sa.rfm["total_amount"] == 200.0
        assert sa.ctb["category"][0]["value"] == "shoes"  # 2 pairs against 1 bag
        assert sa.ctb["brand"][0] == {"value": "acme", "share": 1.0}
        assert 0 < sa.churn_risk < 1
        assert sb.nps["lifetime"] == 100.0 and sb.sentiment["rolling"] > 0
        assert sb.rfm["order_count"] == 0
        # A snapshot per batch that changed the state (the latest of it): each one newer than
        # the one before, so poison produced none.
        assert applied_counts(scores, a)[-1] == 5
        assert applied_counts(scores, a) == sorted(set(applied_counts(scores, a)))

        def has_signals(records: list) -> bool:
            return len(records) >= 4

        signals = [decode(Signal, v) for _, v in await read_until(topics.signals, has_signals)]
        kinds = sorted((s.kind, s.evidence["event_ids"][0]) for s in signals)
        assert ("detractor", "e1") in kinds
        assert ("low_csat", "e1") in kinds
        assert ("high_effort", "e1") in kinds
        assert ("negative_feedback", "e3") in kinds
        assert not [s for s in signals if s.customer_id == b and s.kind == "negative_feedback"]
        negative = next(s for s in signals if s.kind == "negative_feedback")
        assert "Terrible" not in orjson.dumps(negative.model_dump(mode="json")).decode()
        assert negative.evidence["sentiment"] < 0
        ids = [s.signal_id for s in signals]
        assert len(ids) == len(set(ids))

        dlq = await read_until(Topics.dlq(topics.touchpoints_resolved), lambda r: len(r) >= 2)
        assert len(dlq) == 2

        # The same touchpoint published again (an upstream retry at a new offset), then a
        # fresh one as a marker: the duplicate must change nothing.
        await publish(topics.touchpoints_resolved, a, events[3])
        await publish(topics.touchpoints_resolved, a, touchpoint(a, "e8", "page_view", 70))

        def marker_seen(records: list) -> bool:
            snap = latest_snapshots(records).get(a)
            return snap is not None and snap.events_applied >= 6

        scores = await read_until(topics.scores, marker_seen)
        final = latest_snapshots(scores)[a]
        assert final.events_applied == 6
        assert final.rfm["order_count"] == 2 and final.rfm["total_amount"] == 200.0
        # The duplicate produced no snapshot of its own: every snapshot is newer than the last.
        assert applied_counts(scores, a) == sorted(set(applied_counts(scores, a)))
        assert final.rfm["days_since_last_purchase"] == 0
        assert utc_day(final.updated_at.timestamp()) == utc_day(events[4].occurred_at.timestamp())
