"""faust agents: resolve touchpoints into the graph; keep the scores the API serves.

Each agent runs with concurrency=1. The resolver takes touchpoints in batches
(`take_events`): one database transaction resolves the batch, then every resolved and merge
message is sent and all acknowledgements are awaited together; only then does faust ack the
batch's events and may commit their offsets, so a crash anywhere redelivers the batch and
the graph's processed-event table makes that redelivery change nothing. A message that
cannot be parsed goes to the dead-letter topic; a database or broker error crashes the
worker (see cxm_shared.streaming.hosted) so Kafka redelivers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import faust
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from cxm_profile import metrics
from cxm_profile.config import ProfileSettings
from cxm_profile.profiles.service import store_score
from cxm_profile.stream.outbox import Message
from cxm_profile.stream.publish import resolution_messages, send_all
from cxm_profile.stream.service import resolve_batch
from cxm_shared.dlq import dead_letter
from cxm_shared.events import ScoreSnapshot, Touchpoint, decode
from cxm_shared.topics import Topics

log = logging.getLogger(__name__)


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

    async def handle_score(
        self, *, key: bytes | None, value: bytes | None, partition: int, offset: int
    ) -> None:
        try:
            if not key:
                raise ValueError("a score record needs the customer id as key")
            snapshot = None if value is None else decode(ScoreSnapshot, value)
        except (ValidationError, ValueError) as error:
            await self._dead_letter(
                self.topics.scores, Record(key, value, partition, offset), error
            )
            return
        await store_score(engine=self.engine, customer_id=key.decode(), snapshot=snapshot)

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
            await pipeline.handle_touchpoints(
                [Record(e.key, e.value, e.message.partition, e.message.offset) for e in events]
            )

    @app.agent(scores_topic, concurrency=1, name="scores_by_customer")
    async def scores_by_customer(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await pipeline.handle_score(
                key=event.key,
                value=event.value,
                partition=event.message.partition,
                offset=event.message.offset,
            )
