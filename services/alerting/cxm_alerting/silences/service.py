"""Silences stored in PostgreSQL; expiry is a time range, so no clean-up job is needed."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cxm_alerting.errors import AlertingError, NotFound
from cxm_alerting.models import silences
from cxm_alerting.notify.silences import Silence
from cxm_alerting.silences.schemas import SilenceIn, SilenceOut

log = logging.getLogger(__name__)


def _model(row: Any) -> Silence:
    return Silence(
        id=row.id,
        matchers=list(row.matchers),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
    )


def to_out(silence: Silence, *, now: datetime) -> SilenceOut:
    return SilenceOut(
        id=silence.id,
        matchers=[str(m) for m in silence.matchers],
        starts_at=silence.starts_at,
        ends_at=silence.ends_at,
        created_by=silence.created_by,
        comment=silence.comment,
        state=silence.state(now=now).value,
    )


async def create(*, conn: AsyncConnection, body: SilenceIn, now: datetime) -> Silence:
    try:
        # The body's matchers are still text: validation parses them into Matchers.
        silence = Silence.model_validate(
            {
                "id": str(uuid.uuid4()),
                "matchers": body.matchers,
                "starts_at": body.starts_at or now,
                "ends_at": body.ends_at,
                "created_by": body.created_by,
                "comment": body.comment,
            }
        )
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise AlertingError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from exc
    await conn.execute(
        silences.insert().values(
            id=silence.id,
            matchers=[str(m) for m in silence.matchers],
            starts_at=silence.starts_at,
            ends_at=silence.ends_at,
            created_by=silence.created_by,
            comment=silence.comment,
        )
    )
    return silence


async def get(*, conn: AsyncConnection, silence_id: str) -> Silence:
    row = (await conn.execute(select(silences).where(silences.c.id == silence_id))).first()
    if row is None:
        raise NotFound("silence not found")
    return _model(row)


async def list_all(*, conn: AsyncConnection) -> list[Silence]:
    rows = await conn.execute(select(silences).order_by(silences.c.created_at.desc()))
    return [_model(r) for r in rows]


async def active(*, conn: AsyncConnection, now: datetime) -> list[Silence]:
    rows = await conn.execute(
        select(silences).where(silences.c.starts_at <= now, silences.c.ends_at > now)
    )
    return [_model(r) for r in rows]


async def expire(*, conn: AsyncConnection, silence_id: str, now: datetime) -> Silence:
    """End a silence now (kept for the record, as Alertmanager does)."""
    silence = await get(conn=conn, silence_id=silence_id)
    if silence.ends_at > now:
        starts = min(silence.starts_at, now - timedelta(microseconds=1))
        await conn.execute(
            update(silences)
            .where(silences.c.id == silence_id)
            .values(ends_at=now, starts_at=starts)
        )
    return await get(conn=conn, silence_id=silence_id)


class SilenceCache:
    """The silences that have not ended, kept in memory so deciding an alert costs no query.

    Reloaded when older than ``refresh_seconds`` (silences written by another process take
    effect within that time, like Alertmanager's gossiped silences) and at once after this
    process creates or expires one (:meth:`invalidate`). With an ``engine``, a copy nearing
    that age is reloaded in the background on its own connection, so under steady traffic no
    decision waits for the reload query.
    """

    def __init__(self, *, refresh_seconds: float, engine: AsyncEngine | None = None) -> None:
        self._refresh = refresh_seconds
        self._engine = engine
        self._silences: list[Silence] = []
        self._loaded_at: float | None = None
        # Bumped by invalidate(): a background reload started before it must not win.
        self._generation = 0
        self._reloading: asyncio.Task[None] | None = None

    def invalidate(self) -> None:
        self._loaded_at = None
        self._generation += 1

    @staticmethod
    async def _load(conn: AsyncConnection, now: datetime) -> list[Silence]:
        rows = await conn.execute(select(silences).where(silences.c.ends_at > now))
        return [_model(r) for r in rows]

    async def _reload(self, engine: AsyncEngine) -> None:
        generation, clock = self._generation, time.monotonic()
        try:
            async with engine.connect() as conn:
                # One statement: no BEGIN/ROLLBACK round trips around it.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                loaded = await self._load(conn, datetime.now(UTC))
        except Exception:
            log.warning("background silence reload failed; the next decision reloads")
            return
        if generation == self._generation and self._loaded_at is not None:
            self._silences, self._loaded_at = loaded, clock

    async def active(self, *, conn: AsyncConnection, now: datetime) -> list[Silence]:
        clock = time.monotonic()
        age = None if self._loaded_at is None else clock - self._loaded_at
        if age is None or age >= self._refresh:
            self._silences = await self._load(conn, now)
            self._loaded_at = clock
        elif (
            self._engine is not None
            and age >= 0.7 * self._refresh
            and (self._reloading is None or self._reloading.done())
        ):
            self._reloading = asyncio.create_task(self._reload(self._engine))
        return [s for s in self._silences if s.starts_at <= now < s.ends_at]

    async def close(self) -> None:
        if self._reloading is not None:
            self._reloading.cancel()
            await asyncio.gather(self._reloading, return_exceptions=True)
