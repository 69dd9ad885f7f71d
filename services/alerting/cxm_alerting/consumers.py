"""Kafka consumers: signals -> alert decisions; resolved touchpoints, identity merges and
unmerges, and erasures -> journey and alert ownership.

Offsets are committed only after the batch's database transaction committed
(at-least-once); redelivery is harmless because decisions are keyed by deterministic alert
ids and signal ids. A message that cannot be parsed goes to ``<topic>.dlq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cxm_alerting import metrics
from cxm_alerting.alerts.service import Decision, raise_from_signal, raise_from_signal_fast
from cxm_alerting.config import AlertingSettings
from cxm_alerting.delivery.worker import DeliveryWorker
from cxm_alerting.journey.service import (
    erase_customer,
    merge_customers,
    record_touchpoint,
    unmerge_customers,
)
from cxm_alerting.routing.tree import RoutingTree
from cxm_alerting.silences.service import SilenceCache
from cxm_alerting.stream.service import Wakeup
from cxm_shared.dlq import dead_letter
from cxm_shared.events import (
    CustomerErased,
    IdentityChange,
    ResolvedTouchpoint,
    Signal,
    decode,
)
from cxm_shared.kafka import make_consumer
from cxm_shared.topics import Topics

log = logging.getLogger(__name__)

# A handler decodes a record first (a ValidationError there means poison, before any write),
# then applies it inside the batch's transaction.
Decoder = Callable[[ConsumerRecord], Any]
Applier = Callable[[AsyncConnection, Any], Awaitable[Decision | None]]


@dataclass(frozen=True, slots=True)
class Handler:
    decode: Decoder
    apply: Applier
    # Optional: applies one item on an autocommit connection, or returns None so that it is
    # applied in a transaction by ``apply`` (see TopicConsumer._apply_single).
    fast: Callable[[AsyncConnection, Any], Awaitable[Decision | None]] | None = None


# Offsets lag the decisions by this much at most (plus the barrier): a crash redelivers a
# little more, harmlessly; fewer barriers and commits leave more CPU to the signals.
_COMMIT_LINGER_SECONDS = 0.25


_FLUSH_BARRIER = text("SELECT txid_current()")


class OffsetCommitter:
    """Commits a consumer's offsets in the background, each only once the database
    transactions before it are durable.

    The consumer's transactions commit with ``synchronous_commit = off``: the decision is
    visible (and handed to the delivery worker) without waiting for the WAL fsync, which is
    the slowest step on the way to the webhook. Before the offsets move, a small synchronous
    transaction waits for the WAL flush, which covers every earlier commit: so an offset is
    never committed past a decision a PostgreSQL crash could still lose. If PostgreSQL dies
    first, the signal is redelivered and decided again under the same alert id (webhook-id).
    """

    def __init__(self, *, consumer: Any, engine: AsyncEngine) -> None:
        self._consumer = consumer
        self._engine = engine
        self._pending: dict[Any, int] = {}
        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="offset-committer")

    def add(self, offsets: dict[Any, int]) -> None:
        self._pending.update(offsets)
        self._ready.set()

    def check(self) -> None:
        """Re-raise the committer's failure in the consuming task (which then restarts)."""
        if self._task.done() and not self._task.cancelled():
            self._task.result()

    async def _run(self) -> None:
        # Its own connection, in autocommit: the barrier is one statement, one round trip
        # (no pool checkout, pre-ping, BEGIN or COMMIT of its own).
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            while True:
                await self._ready.wait()
                # Linger: one flush barrier and one offset commit cover every batch meanwhile.
                await asyncio.sleep(_COMMIT_LINGER_SECONDS)
                self._ready.clear()
                offsets, self._pending = self._pending, {}
                # An xid makes this statement's implicit commit wait for the WAL flush up to
                # here (synchronous_commit is on for this connection).
                await conn.execute(_FLUSH_BARRIER)
                await self._consumer.commit(offsets)

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _reset_session(conn: AsyncConnection) -> None:
    """Give the pooled connection back with the server's default commit behaviour."""
    try:
        await conn.exec_driver_sql("RESET synchronous_commit")
        await conn.commit()
    except Exception:
        await conn.invalidate()


class TopicConsumer:
    """One consumer group over some topics. Each ``getmany`` batch is applied in one database
    transaction on a connection the consumer keeps; its offsets are committed once, after the
    transaction is durable and the decisions were handed on (at-least-once, never ahead of
    the database)."""

    def __init__(
        self,
        *,
        name: str,
        settings: AlertingSettings,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        topics: list[str],
        handler: Handler,
        after_commit: Callable[[list[Decision]], None] | None = None,
    ) -> None:
        self.name = name
        self._settings = settings
        self._engine = engine
        self._producer = producer
        self._topics = topics
        self._handler = handler
        self._after_commit = after_commit

    async def run(self) -> None:
        """Consume until cancelled; on an infrastructure error start over from the last
        committed offsets (nothing is committed past an unprocessed record)."""
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer failed; restarting consumer=%s", self.name)
                await asyncio.sleep(1.0)

    async def _consume(self) -> None:
        group = f"{self._settings.topic_prefix}{self._settings.consumer_group}.{self.name}"
        consumer = make_consumer(
            self._settings.kafka_bootstrap,
            *self._topics,
            group_id=group,
            client_id=f"cxm-alerting-{self.name}",
            max_poll_records=200,
        )
        await consumer.start()
        committer = OffsetCommitter(consumer=consumer, engine=self._engine)
        try:
            # One connection for the consumer's life: no pool checkout (and pre-ping round
            # trip) per batch. Its commits do not wait for the WAL flush; the committer makes
            # them durable before it commits the offsets (see OffsetCommitter). A handler with
            # a fast path gets a second one, in autocommit, for single-record batches.
            async with self._engine.connect() as conn, self._fast_connection() as fast:
                await conn.exec_driver_sql("SET synchronous_commit TO off")
                await conn.commit()
                try:
                    while True:
                        committer.check()
                        batches = await consumer.getmany(timeout_ms=500)
                        if not batches:
                            continue
                        if not await self._apply_single(fast, batches):
                            await self._apply_batch(conn, batches)
                        committer.add(
                            {tp: recs[-1].offset + 1 for tp, recs in batches.items() if recs}
                        )
                finally:
                    await _reset_session(conn)
        finally:
            await committer.close()
            await consumer.stop()

    @contextlib.asynccontextmanager
    async def _fast_connection(self) -> AsyncIterator[AsyncConnection | None]:
        if self._handler.fast is None:
            yield None
            return
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("SET synchronous_commit TO off")
            try:
                yield conn
            finally:
                await _reset_session(conn)

    async def _apply_single(
        self, conn: AsyncConnection | None, batches: dict[Any, list[ConsumerRecord]]
    ) -> bool:
        """A batch of one record through the handler's fast path (at a steady rate most
        batches hold one record): True when it was applied. Larger batches (catching up)
        stay on the one-transaction path: they share its BEGIN/COMMIT, and a record the fast
        path declined would need a transaction of its own."""
        records = [r for recs in batches.values() for r in recs]
        if conn is None or self._handler.fast is None or len(records) != 1:
            return False
        try:
            item = self._handler.decode(records[0])
        except ValidationError:
            return False  # dead-lettered by the batch path
        if item is None:
            return False
        decision = await self._handler.fast(conn, item)
        if decision is None:
            return False
        if self._after_commit is not None:
            self._after_commit([decision])
        return True

    async def _apply_batch(
        self, conn: AsyncConnection, batches: dict[Any, list[ConsumerRecord]]
    ) -> None:
        decisions: list[Decision] = []
        poison: list[tuple[ConsumerRecord, Exception]] = []
        async with conn.begin():
            for records in batches.values():
                for record in records:
                    try:
                        item = self._handler.decode(record)
                    except ValidationError as exc:
                        poison.append((record, exc))
                        continue
                    if item is None:
                        continue
                    decision = await self._handler.apply(conn, item)
                    if decision is not None:
                        decisions.append(decision)
        # Hand the decisions on before the offset commit: a crash now redelivers the batch,
        # whose decisions are idempotent (deterministic alert ids, signal ids in evidence).
        if decisions and self._after_commit is not None:
            self._after_commit(decisions)
        for record, error in poison:
            await self._dead_letter(record, error)

    async def _dead_letter(self, record: ConsumerRecord, exc: Exception) -> None:
        await dead_letter(
            self._producer,
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            error=exc,
            service="alerting",
        )
        metrics.DEAD_LETTERED.labels(record.topic).inc()
        log.warning(
            "dead-lettered topic=%s partition=%d offset=%d",
            record.topic,
            record.partition,
            record.offset,
        )


def signal_handler(
    *,
    settings: AlertingSettings,
    tree: Callable[[], RoutingTree],
    silence_cache: SilenceCache | None = None,
) -> Handler:
    def decode_signal(record: ConsumerRecord) -> Signal | None:
        # A tombstone carries no signal.
        return None if record.value is None else decode(Signal, record.value)

    async def apply(conn: AsyncConnection, signal: Signal) -> Decision:
        return await raise_from_signal(
            conn=conn,
            signal=signal,
            tree=tree(),
            settings=settings,
            now=datetime.now(UTC),
            silence_cache=silence_cache,
        )

    async def fast(conn: AsyncConnection, signal: Signal) -> Decision | None:
        return await raise_from_signal_fast(
            conn=conn,
            signal=signal,
            tree=tree(),
            settings=settings,
            now=datetime.now(UTC),
            silence_cache=silence_cache,
        )

    return Handler(decode_signal, apply, fast)


def journey_handler(*, settings: AlertingSettings, topics: Topics) -> Handler:
    def decode_journey(record: ConsumerRecord) -> Any:
        if record.value is None:
            return None
        if record.topic == topics.erasures:
            return decode(CustomerErased, record.value)
        if record.topic == topics.identity_merges:
            return decode(IdentityChange, record.value)
        return decode(ResolvedTouchpoint, record.value)

    async def apply(conn: AsyncConnection, item: Any) -> None:
        if isinstance(item, CustomerErased):
            await erase_customer(conn=conn, customer_id=item.customer_id)
        elif isinstance(item, IdentityChange) and item.kind == "unmerged":
            await unmerge_customers(
                conn=conn, change=item, now=datetime.now(UTC), journey_size=settings.journey_size
            )
        elif isinstance(item, IdentityChange):
            await merge_customers(conn=conn, change=item, now=datetime.now(UTC))
        else:
            await record_touchpoint(conn=conn, touchpoint=item, keep=settings.journey_size)
        return None

    return Handler(decode_journey, apply)


def record_decisions(decisions: list[Decision], wakeup: Wakeup, worker: DeliveryWorker) -> None:
    """After commit: start the deliveries handed over in memory, wake streams, count."""
    wake = False
    for decision in decisions:
        metrics.SIGNALS_CONSUMED.labels(decision.kind).inc()
        if decision.action in ("opened", "reopened"):
            metrics.ALERTS_RAISED.labels(decision.kind, decision.team).inc()
        elif decision.action == "suppressed" and decision.mute_kind:
            metrics.ALERTS_MUTED.labels(decision.kind, decision.mute_kind).inc()
        if decision.handoff:
            worker.submit(decision.handoff)
        if decision.streamed or decision.outbox > len(decision.handoff):
            wake = True
    if wake:
        wakeup.notify()
