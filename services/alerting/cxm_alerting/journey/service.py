"""The customer's recent touchpoints across channels, kept by alerting itself from
``cx.touchpoints.resolved`` (services never read each other's databases)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cxm_alerting.models import alerts, deliveries, journey, stream_events
from cxm_alerting.notify.payloads import masked_identifiers
from cxm_shared.events import IdentityChange, ResolvedTouchpoint


async def record_touchpoint(
    *, conn: AsyncConnection, touchpoint: ResolvedTouchpoint, keep: int
) -> None:
    """Store one touchpoint (identifiers masked: raw ones never land here) and trim the
    customer's journey to the ``keep`` most recent."""
    await conn.execute(
        insert(journey)
        .values(
            customer_id=touchpoint.customer_id,
            event_id=touchpoint.event_id,
            occurred_at=touchpoint.occurred_at,
            channel=touchpoint.channel,
            touchpoint=touchpoint.touchpoint,
            type=touchpoint.type,
            identifiers=masked_identifiers(touchpoint.identifiers),
        )
        .on_conflict_do_nothing()
    )
    await conn.execute(
        text(
            "DELETE FROM alerting.journey WHERE customer_id = :c AND event_id IN ("
            " SELECT event_id FROM alerting.journey WHERE customer_id = :c"
            " ORDER BY occurred_at DESC OFFSET :keep)"
        ),
        {"c": touchpoint.customer_id, "keep": keep},
    )


_LAST_TOUCHPOINTS = (
    select(journey)
    .where(journey.c.customer_id == bindparam("customer"))
    .order_by(journey.c.occurred_at.desc())
    .limit(bindparam("n"))
)


async def last_touchpoints(
    *, conn: AsyncConnection, customer_id: str, limit: int
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(most recent touchpoints first, masked identifiers seen across them)."""
    rows = (await conn.execute(_LAST_TOUCHPOINTS, {"customer": customer_id, "n": limit})).all()
    identifiers: dict[str, str] = {}
    points = []
    for row in rows:
        for kind, value in (row.identifiers or {}).items():
            identifiers.setdefault(kind, value)
        points.append(
            {
                "event_id": row.event_id,
                "occurred_at": row.occurred_at.isoformat(),
                "channel": row.channel,
                "touchpoint": row.touchpoint,
                "type": row.type,
            }
        )
    return points, identifiers


async def erase_customer(*, conn: AsyncConnection, customer_id: str) -> None:
    """GDPR erasure: the customer's journey, alerts, pending deliveries and stream events."""
    ids = select(alerts.c.alert_id).where(alerts.c.customer_id == customer_id)
    await conn.execute(delete(deliveries).where(deliveries.c.alert_id.in_(ids)))
    await conn.execute(delete(stream_events).where(stream_events.c.alert_id.in_(ids)))
    await conn.execute(delete(alerts).where(alerts.c.customer_id == customer_id))
    await conn.execute(delete(journey).where(journey.c.customer_id == customer_id))


_MOVE_JOURNEY = text(
    "INSERT INTO alerting.journey"
    " (customer_id, event_id, occurred_at, channel, touchpoint, type, identifiers)"
    " SELECT :winner, event_id, occurred_at, channel, touchpoint, type, identifiers"
    " FROM alerting.journey WHERE customer_id = :loser ON CONFLICT DO NOTHING"
)


async def merge_customers(*, conn: AsyncConnection, change: IdentityChange, now: datetime) -> int:
    """Profile merged ``loser`` into ``winner``: the loser's journey joins the winner's and
    the loser's alerts are re-keyed to the winner (alert ids, and so webhook-ids, unchanged),
    so the console and new alerts show one customer. Returns the number of alerts moved."""
    winner, loser = change.winner_id, change.loser_id
    if winner == loser:
        return 0
    await conn.execute(_MOVE_JOURNEY, {"winner": winner, "loser": loser})
    await conn.execute(delete(journey).where(journey.c.customer_id == loser))
    rows = (
        await conn.execute(select(alerts).where(alerts.c.customer_id == loser).with_for_update())
    ).all()
    base_url: str | None = None
    for row in rows:
        payload = dict(row.payload or {})
        customer = dict(payload.get("customer") or {})
        customer["customer_id"] = winner
        payload["customer"] = customer
        if payload.get("profile_url"):
            base_url = str(payload["profile_url"]).rsplit("/", 1)[0]
            payload["profile_url"] = f"{base_url}/{winner}"
        entry = {
            "at": now.isoformat(),
            "action": "customer merged",
            "merge_id": change.merge_id,
            "reason": change.reason,
            "from_customer": loser,
        }
        await conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == row.alert_id)
            .values(
                customer_id=winner,
                labels={**(row.labels or {}), "customer_id": winner},
                payload=payload,
                history=[*(row.history or []), entry][-50:],
                updated_at=now,
            )
        )
    return len(rows)
