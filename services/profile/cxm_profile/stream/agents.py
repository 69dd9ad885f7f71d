"""faust agents: resolve touchpoints into the graph; keep the scores the API serves.

Each agent runs with concurrency=1. The resolver takes touchpoints in batches
(`take_events`): one database transaction resolves the batch, then every resolved and merge
message is sent and all acknowledgements are awaited together; only then does faust ack the
batch's events and may commit their offsets, so a crash anywhere redelivers the batch and
the graph's processed-event table makes that redelivery change nothing. A message that
cannot be parsed goes to the dead-letter topic; while the database or the broker does not
answer, the batch is retried in place (the same as a redelivery); any other error crashes
the worker (see cxm_shared.streaming.hosted) so Kafka redelivers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import faust
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from cxm_profile import metrics
from cxm_profile.config import ProfileSettings
from cxm_profile.profiles.service import store_scores
from cxm_profile.stream.outbox import Message
from cxm_profile.stream.publish import resolution_messages, send_all
from cxm_profile.stream.service import resolve_batch
from cxm_shared.dlq import dead_letter
from cxm_shared.events import ScoreSnapshot, Touchpoint, decode
from cxm_shared.outages import unavailable_dependency
from cxm_shared.topics import Topics

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0


class Record(NamedTuple):
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int


class UnidentifiedTouchpoint(Exception):
    """The touchpoint carried no identifier resolution could use."""


class Pipeline:
    """What the agents do with one message, with the clients they share."""

    def __init__(
        self,
        *,
        settings: ProfileSettings,
        engine: AsyncEngine,
        topics: Topics,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.topics = topics
        self._producer = producer

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the pipeline's producer is set when the service starts")
        return self._producer

    @producer.setter
    def producer(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def handle_touchpoint(
        self, *, key: bytes | None, value: bytes | None, partition: int, offset: int
    ) -> str | None:
        (customer_id,) = await self.handle_touchpoints([Record(key, value, partition, offset)])
        return customer_id

    async def handle_touchpoints(self, records: Sequence[Record]) -> list[str | None]:
        """Resolve a batch; return each record's customer id (None: dead-lettered or
        suppressed). Returns once the database committed and the broker acknowledged every
        message the batch produced."""
        decoded: list[tuple[Record, Touchpoint]] = []
        for record in records:
            try:
                decoded.append((record, decode(Touchpoint, record.value or b"")))
            except ValidationError as error:
                await self._dead_letter(self.topics.touchpoints, record, error)
        outcomes = await resolve_batch(
            engine=self.engine,
            touchpoints=[tp for _, tp in decoded],
            rules=self.settings.rules,
            secret=self.settings.secret,
        )
        by_record: dict[int, str | None] = {}
        messages: list[Message] = []
        for (record, touchpoint), outcome in zip(decoded, outcomes, strict=True):
            by_record[id(record)] = outcome.customer_id
            if outcome.customer_id is None:
                if outcome.suppressed:
                    metrics.EVENTS.labels(outcome="suppressed").inc()
                    continue
                error = UnidentifiedTouchpoint(
                    "no usable identifier: "
                    + ", ".join(f"{i.type} ({i.reason})" for i in outcome.ignored)
                )
                await self._dead_letter(self.topics.touchpoints, record, error)
                continue
            messages.extend(
                resolution_messages(
                    self.topics,
                    touchpoint=touchpoint,
                    customer_id=outcome.customer_id,
                    merges=outcome.merges,
                )
            )
            metrics.EVENTS.labels(outcome="duplicate" if outcome.duplicate else "resolved").inc()
        await send_all(self.producer, messages)
        return [by_record.get(id(record)) for record in records]

    async def decode_scores(self, records: Sequence[Record]) -> list[tuple[str, Any]]:
        """The batch's (customer id, snapshot or None for a tombstone), in topic order; a
        record that is not a score snapshot goes to the dead-letter topic."""
        decoded: list[tuple[str, Any]] = []
        for record in records:
            try:
                if not record.key:
                    raise ValueError("a score record needs the customer id as key")
                value = record.value
                decoded.append(
                    (record.key.decode(), None if value is None else decode(ScoreSnapshot, value))
                )
            except (ValidationError, ValueError) as error:
                await self._dead_letter(self.topics.scores, record, error)
        return decoded

    async def _dead_letter(self, topic: str, record: Record, error: BaseException) -> None:
        key, value, partition, offset = record
        metrics.EVENTS.labels(outcome="dead_lettered").inc()
        log.warning("dead-lettered topic=%s partition=%d offset=%d", topic, partition, offset)
        await dead_letter(
            self.producer,
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            value=value,
            error=error,
            service="profile",
        )


async def retry_while_unavailable(work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` again (backing off) while PostgreSQL or Kafka does not answer, instead of
    crashing the worker: the process, and its API, stay up through a database or broker
    restart. Safe because a failed attempt committed nothing and acked no event, exactly as
    if Kafka had redelivered the batch; any other error still crashes the worker."""
    delay = RETRY_FIRST_S
    while True:
        try:
            return await work()
        except Exception as error:
            dependency = unavailable_dependency(error)
            if dependency is None:
                raise
            log.warning(
                "dependency unavailable, retrying dependency=%s error=%s retry_in=%.1f",
                dependency,
                type(error).__name__,
                delay,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_S)


def register_agents(app: faust.App, pipeline: Pipeline) -> None:
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    touchpoints_topic = app.topic(pipeline.topics.touchpoints, **raw)
    scores_topic = app.topic(pipeline.topics.scores, **raw)

    settings = pipeline.settings

    @app.agent(touchpoints_topic, concurrency=1, name="resolve_touchpoints")
    async def resolve_touchpoints(stream: faust.StreamT) -> None:
        batches = stream.take_events(
            settings.resolution_batch_size, within=settings.resolution_batch_wait_seconds
        )
        async for events in batches:
            records = [
                Record(e.key, e.value, e.message.partition, e.message.offset) for e in events
            ]
            await retry_while_unavailable(
                lambda records=records: pipeline.handle_touchpoints(records)
            )

    @app.agent(scores_topic, concurrency=1, name="scores_by_customer")
    async def scores_by_customer(stream: faust.StreamT) -> None:
        # In batches: one transaction per batch, not per snapshot (scoring publishes one
        # snapshot per customer per batch of its own; the API shows the newest).
        batches = stream.take_events(
            settings.scores_batch_size, within=settings.resolution_batch_wait_seconds
        )
        async for events in batches:
            records = [
                Record(e.key, e.value, e.message.partition, e.message.offset) for e in events
            ]
            decoded = await pipeline.decode_scores(records)
            if decoded:
                await retry_while_unavailable(
                    lambda decoded=decoded: store_scores(engine=pipeline.engine, records=decoded)
                )
