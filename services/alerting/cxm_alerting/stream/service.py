"""Per-team event streams persisted in PostgreSQL, so an SSE client resumes with
``Last-Event-ID`` without gaps, whichever process wrote the events."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cxm_alerting.models import stream_events, stream_heads


async def append_event(
    *, conn: AsyncConnection, team: str, event: str, alert_id: str, data: dict[str, Any]
) -> int:
    """Add an event to ``team``'s stream inside the caller's transaction; returns its id.

    The upsert row-locks the team's head until commit, so a concurrent writer waits and ids
    become visible strictly in order (a reader never sees 7 before 6 is committed).
    """
    bump = (
        insert(stream_heads)
        .values(team=team, seq=1)
        .on_conflict_do_update(index_elements=["team"], set_={"seq": stream_heads.c.seq + 1})
        .returning(stream_heads.c.seq)
    )
    seq = (await conn.execute(bump)).scalar_one()
    await conn.execute(
        stream_events.insert().values(team=team, seq=seq, event=event, alert_id=alert_id, data=data)
    )
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
