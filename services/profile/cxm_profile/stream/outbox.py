"""The transactional outbox: what the person-driven graph changes announce on Kafka.

Unmerge, quarantine approval and erase write their messages into ``profile.outbox`` in the
same transaction as the change, so a committed change is always announced, however the
broker or the process fails after the commit. `OutboxRelay` publishes pending rows in id
order and deletes each batch once the broker acknowledged all of it (at-least-once: a crash
between the acknowledgement and the delete re-sends; consumers are idempotent). The route
that made the change asks for a flush at once, so normally the announcement is out before
it answers; the background loop retries whatever that flush could not send.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cxm_profile import metrics

log = logging.getLogger(__name__)

Message = tuple[str, str, bytes | None]  # (topic, key, value); value None is a tombstone

_PENDING = text(
    "SELECT id, topic, key, value FROM profile.outbox ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"
)
_DELETE = text("DELETE FROM profile.outbox WHERE id = ANY(CAST(:ids AS bigint[]))")


async def enqueue(conn: AsyncConnection, messages: Iterable[Message]) -> None:
    """Add messages to the outbox inside the caller's transaction."""
    rows = [{"t": topic, "k": key.encode(), "v": value} for topic, key, value in messages]
    if rows:
        await conn.execute(
            text("INSERT INTO profile.outbox (topic, key, value) VALUES (:t, :k, :v)"), rows
        )


class OutboxRelay:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        producer: AIOKafkaProducer | None = None,
        interval: float = 1.0,
        batch: int = 500,
    ) -> None:
        self.engine = engine
        self.producer = producer
        self.interval = interval
        self.batch = batch
        self._lock = asyncio.Lock()  # one drain at a time in this process keeps id order
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def drain(self) -> int:
        """Publish every pending row; return how many were sent. Raises if the broker or the
        database fails (the rows stay pending)."""
        if self.producer is None:
            raise RuntimeError("the relay's producer is set when the service starts")
        sent = 0
        async with self._lock:
            while True:
                async with self.engine.begin() as conn:
                    rows = (await conn.execute(_PENDING, {"n": self.batch})).all()
                    if not rows:
                        return sent
                    futures = [
                        await self.producer.send(r.topic, key=bytes(r.key), value=r.value)
                        for r in rows
                    ]
                    await asyncio.gather(*futures)
                    await conn.execute(_DELETE, {"ids": [r.id for r in rows]})
                sent += len(rows)
                metrics.OUTBOX_SENT.inc(len(rows))

    async def flush(self, *, timeout: float | None = None) -> bool:
        """Try to publish now; on failure leave it to the background loop. True if sent.
        ``timeout``: give up after that long (a route answering its caller: the change is
        committed, and the relay sends the rest; an interrupted send may go out twice, which
        consumers absorb)."""
        try:
            async with asyncio.timeout(timeout):
                await self.drain()
            return True
        except (KafkaError, DBAPIError, OSError) as error:  # OSError: TimeoutError too
            metrics.OUTBOX_FAILURES.inc()
            log.warning("outbox flush failed, relay will retry error=%s", type(error).__name__)
            return False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="profile-outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()
