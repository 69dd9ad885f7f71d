"""Per-team event streams persisted in PostgreSQL, so an SSE client resumes with
``Last-Event-ID`` without gaps, whichever process wrote the events."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from cxm_alerting.models import stream_events

# One round trip: bump the team's head (row-locked until commit) and insert the event.
_APPEND = text(
    "WITH head AS (INSERT INTO alerting.stream_heads AS h (team, seq) VALUES (:team, 1)"
    " ON CONFLICT (team) DO UPDATE SET seq = h.seq + 1 RETURNING seq)"
    " INSERT INTO alerting.stream_events (team, seq, event, alert_id, data)"
    " SELECT :team, seq, :event, :alert_id, :data FROM head RETURNING seq"
).bindparams(bindparam("data", type_=JSONB))


async def append_event(
    *, conn: AsyncConnection, team: str, event: str, alert_id: str, data: dict[str, Any]
) -> int:
    """Add an event to ``team``'s stream inside the caller's transaction; returns its id.

    The upsert row-locks the team's head until commit, so a concurrent writer waits and ids
    become visible strictly in order (a reader never sees 7 before 6 is committed).
    """
    seq = (
        await conn.execute(
            _APPEND, {"team": team, "event": event, "alert_id": alert_id, "data": data}
        )
    ).scalar_one()
    return int(seq)


async def events_after(
    *, conn: AsyncConnection, team: str, after: int, limit: int = 500
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(stream_events)
        .where(stream_events.c.team == team, stream_events.c.seq > after)
        .order_by(stream_events.c.seq)
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


class Wakeup:
    """Wakes in-process waiters (SSE streams, the delivery worker) after a commit; waiters
    also poll, so events written by other processes are seen too."""

    def __init__(self) -> None:
        self._events: set[asyncio.Event] = set()

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._events.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._events.discard(event)

    def notify(self) -> None:
        for event in self._events:
            event.set()


async def wait_for(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass
    event.clear()
