"""The customer's recent touchpoints across channels, kept by alerting itself from
``cx.touchpoints.resolved`` (services never read each other's databases)."""

from __future__ import annotations

from collections.abc import Iterable
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
    return journey_view(
        (r.event_id, r.occurred_at, r.channel, r.touchpoint, r.type, r.identifiers) for r in rows
    )


def journey_view(
    rows: Iterable[tuple[str, datetime, str, str | None, str, dict[str, str] | None]],
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Touchpoints (event_id, occurred_at, channel, touchpoint, type, identifiers), most recent
    first, as an alert shows them, and the masked identifiers seen across them."""
    identifiers: dict[str, str] = {}
    points = []
    for event_id, occurred_at, channel, touchpoint, type_, seen in rows:
        for kind, value in (seen or {}).items():
            identifiers.setdefault(kind, value)
        points.append(
            {
                "event_id": event_id,
                "occurred_at": occurred_at.isoformat(),
                "channel": channel,
                "touchpoint": touchpoint,
                "type": type_,
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
    " (customer_id, event_id, occurred_at, channel, touchpoint, type, identifiers, merged_via)"
    " SELECT :winner, event_id, occurred_at, channel, touchpoint, type, identifiers,"
    " merged_via || jsonb_build_array(jsonb_build_array(CAST(:merge_id AS text),"
    " CAST(:loser AS text)))"
    " FROM alerting.journey WHERE customer_id = :loser ON CONFLICT DO NOTHING"
)


def _rekey(payload: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """The alert content pointing at ``customer_id`` (customer block and profile link)."""
    payload = dict(payload)
    customer = dict(payload.get("customer") or {})
    customer["customer_id"] = customer_id
    payload["customer"] = customer
    if payload.get("profile_url"):
        base_url = str(payload["profile_url"]).rsplit("/", 1)[0]
        payload["profile_url"] = f"{base_url}/{customer_id}"
    return payload


async def merge_customers(*, conn: AsyncConnection, change: IdentityChange, now: datetime) -> int:
    """Profile merged ``loser`` into ``winner``: the loser's journey joins the winner's and
    the loser's alerts are re-keyed to the winner (alert ids, and so webhook-ids, unchanged),
    so the console and new alerts show one customer. Both remember the merge (journey
    ``merged_via``, alert payload ``merged_via``) so an unmerge can move them back. Returns the
    number of alerts moved."""
    winner, loser = change.winner_id, change.loser_id
    if winner == loser:
        return 0
    await conn.execute(
        _MOVE_JOURNEY, {"winner": winner, "loser": loser, "merge_id": change.merge_id}
    )
    await conn.execute(delete(journey).where(journey.c.customer_id == loser))
    rows = (
        await conn.execute(select(alerts).where(alerts.c.customer_id == loser).with_for_update())
    ).all()
    for row in rows:
        payload = _rekey(row.payload or {}, winner)
        payload["merged_via"] = [*(payload.get("merged_via") or []), [change.merge_id, loser]]
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


def _split_index(stack: Any, merge_id: str) -> int | None:
    """Where ``merge_id`` sits in a ``merged_via`` stack ([[merge_id, from customer], ...])."""
    for index, entry in enumerate(stack or []):
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == merge_id:
            return index
    return None


def _merged_from_history(history: Any, merge_id: str) -> str | None:
    """The customer an alert came from in ``merge_id``, for alerts re-keyed before merges were
    recorded in the payload (their history entry names it)."""
    for entry in history or []:
        if entry.get("action") == "customer merged" and entry.get("merge_id") == merge_id:
            return str(entry.get("from_customer") or "") or None
    return None


def _opening_event_ids(payload: dict[str, Any]) -> set[str]:
    evidence = payload.get("evidence") or []
    first = evidence[0] if evidence and isinstance(evidence[0], dict) else {}
    return {str(e) for e in first.get("event_ids") or []}


async def unmerge_customers(
    *, conn: AsyncConnection, change: IdentityChange, now: datetime, journey_size: int
) -> int:
    """Profile undid merge ``change.merge_id``: ``loser_id`` is a customer again, split from
    ``winner_id``. Symmetric to :func:`merge_customers`, as far as alerting's data allows:

    - touchpoints the merge moved (journey ``merged_via``) go back to the customer they had
      before it, with their later merges (a nested merge is undone with its outer one);
    - alerts the merge re-keyed go back likewise (alert ids and webhook-ids unchanged);
    - an alert opened on the merged customer whose opening evidence names only touchpoints
      that went back belongs to the restored customer too.

    Limits: touchpoints resolved to the merged customer after the merge stay with
    ``winner_id`` (alerting keeps only masked identifiers, and profile does not re-announce
    them), and so do alerts opened on them; touchpoints trimmed from the journey (it keeps
    the last ``journey_size`` per customer) cannot be moved, nor can alerts be attributed by
    them; a moved-back alert keeps evidence added while merged. Returns the number of alerts
    moved."""
    merge_id, split_from = change.merge_id, change.winner_id
    if split_from == change.loser_id:
        return 0
    rows = (await conn.execute(select(journey).where(journey.c.customer_id == split_from))).all()
    moved_events: dict[str, set[str]] = {}
    for row in rows:
        index = _split_index(row.merged_via, merge_id)
        if index is None:
            continue
        origin = str(row.merged_via[index][1])
        await conn.execute(
            insert(journey)
            .values(
                customer_id=origin,
                event_id=row.event_id,
                occurred_at=row.occurred_at,
                channel=row.channel,
                touchpoint=row.touchpoint,
                type=row.type,
                identifiers=row.identifiers,
                merged_via=list(row.merged_via[:index]),
            )
            .on_conflict_do_nothing()
        )
        await conn.execute(
            delete(journey).where(
                journey.c.customer_id == split_from, journey.c.event_id == row.event_id
            )
        )
        moved_events.setdefault(origin, set()).add(row.event_id)

    candidates = (
        await conn.execute(
            select(alerts).where(alerts.c.customer_id == split_from).with_for_update()
        )
    ).all()
    gone = set().union(*moved_events.values())
    moved = 0
    for alert in candidates:
        payload = dict(alert.payload or {})
        stack = list(payload.get("merged_via") or [])
        index = _split_index(stack, merge_id)
        owner: str | None
        if index is not None:
            owner, stack = str(stack[index][1]), stack[:index]
        else:
            owner = _merged_from_history(alert.history, merge_id)
        if owner is None:
            opening = _opening_event_ids(payload)
            owner = next(
                (c for c, events in moved_events.items() if opening and opening <= events), None
            )
        if owner is None:
            if any(t.get("event_id") in gone for t in payload.get("last_touchpoints") or []):
                # Stays, but its journey no longer shows the restored customer's touchpoints.
                points, identifiers = await last_touchpoints(
                    conn=conn, customer_id=split_from, limit=journey_size
                )
                payload["last_touchpoints"] = points
                payload["customer"] = {
                    **(payload.get("customer") or {}),
                    "identifiers": identifiers,
                }
                await conn.execute(
                    update(alerts)
                    .where(alerts.c.alert_id == alert.alert_id)
                    .values(payload=payload, updated_at=now)
                )
            continue
        payload = _rekey(payload, owner)
        payload["merged_via"] = stack
        touchpoints, identifiers = await last_touchpoints(
            conn=conn, customer_id=owner, limit=journey_size
        )
        payload["last_touchpoints"] = touchpoints
        payload["customer"] = {**payload["customer"], "identifiers": identifiers}
        entry = {
            "at": now.isoformat(),
            "action": "customer unmerged",
            "merge_id": merge_id,
            "reason": change.reason,
            "from_customer": split_from,
            "to_customer": owner,
        }
        await conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == alert.alert_id)
            .values(
                customer_id=owner,
                labels={**(alert.labels or {}), "customer_id": owner},
                payload=payload,
                history=[*(alert.history or []), entry][-50:],
                updated_at=now,
            )
        )
        moved += 1
    return moved
