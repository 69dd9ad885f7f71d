"""Kafka consumers: signals -> alert decisions, resolved touchpoints -> journey, erasures.

Offsets are committed only after the message's database transaction committed
(at-least-once); redelivery is harmless because decisions are keyed by deterministic alert
ids and signal ids. A message that cannot be parsed goes to ``<topic>.dlq``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cxm_alerting import metrics
from cxm_alerting.alerts.service import Decision, raise_from_signal
from cxm_alerting.config import AlertingSettings
from cxm_alerting.journey.service import erase_customer, record_touchpoint
from cxm_alerting.routing.tree import RoutingTree
from cxm_alerting.stream.service import Wakeup
from cxm_shared.dlq import dead_letter
from cxm_shared.events import CustomerErased, ResolvedTouchpoint, Signal, decode
from cxm_shared.kafka import make_consumer
from cxm_shared.topics import Topics

log = logging.getLogger(__name__)

Handler = Callable[[AsyncConnection, ConsumerRecord], Awaitable[Decision | None]]


class TopicConsumer:
    """One consumer group over some topics; each record handled in its own DB transaction."""

    def __init__(
        self,
        *,
        name: str,
        settings: AlertingSettings,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        topics: list[str],
        handler: Handler,
        after_commit: Callable[[Decision], None] | None = None,
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
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for record in records:
                        decision = await self._handle(record)
                        await consumer.commit({tp: record.offset + 1})
                        if decision is not None and self._after_commit is not None:
                            self._after_commit(decision)
        finally:
            await consumer.stop()

    async def _handle(self, record: ConsumerRecord) -> Decision | None:
        try:
            async with self._engine.begin() as conn:
                return await self._handler(conn, record)
        except ValidationError as exc:
            await self._dead_letter(record, exc)
            return None

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


def signal_handler(*, settings: AlertingSettings, tree: Callable[[], RoutingTree]) -> Handler:
    async def handle(conn: AsyncConnection, record: ConsumerRecord) -> Decision | None:
        if record.value is None:
            return None  # a tombstone carries no signal
        signal = decode(Signal, record.value)
        return await raise_from_signal(
            conn=conn, signal=signal, tree=tree(), settings=settings, now=datetime.now(UTC)
        )

    return handle


def journey_handler(*, settings: AlertingSettings, topics: Topics) -> Handler:
    async def handle(conn: AsyncConnection, record: ConsumerRecord) -> None:
        if record.topic == topics.erasures:
            if record.value is None:
                return None
            erased = decode(CustomerErased, record.value)
            await erase_customer(conn=conn, customer_id=erased.customer_id)
            return None
        if record.value is None:
            return None
        touchpoint = decode(ResolvedTouchpoint, record.value)
        await record_touchpoint(conn=conn, touchpoint=touchpoint, keep=settings.journey_size)
        return None

    return handle


def record_decision(decision: Decision, wakeup: Wakeup) -> None:
    metrics.SIGNALS_CONSUMED.labels(decision.kind).inc()
    if decision.action in ("opened", "reopened"):
        metrics.ALERTS_RAISED.labels(decision.kind, decision.team).inc()
    elif decision.action == "suppressed" and decision.mute_kind:
        metrics.ALERTS_MUTED.labels(decision.kind, decision.mute_kind).inc()
    if decision.outbox or decision.streamed:
        wakeup.notify()
