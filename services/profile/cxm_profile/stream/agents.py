"""faust agents: resolve touchpoints into the graph; keep the scores the API serves.

Each agent runs with concurrency=1 and finishes a message (database commit, then every
publish acknowledged) before faust may commit its offset, so a crash anywhere redelivers it;
the graph's processed-event table makes that redelivery change nothing. A message that
cannot be parsed goes to the dead-letter topic; a database or broker error crashes the
worker (see cxm_shared.streaming.hosted) so Kafka redelivers.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from cxm_profile import metrics
from cxm_profile.config import ProfileSettings
from cxm_profile.profiles.service import store_score
from cxm_profile.stream.publish import publish_resolution
from cxm_profile.stream.service import resolve_touchpoint
from cxm_shared.dlq import dead_letter
from cxm_shared.events import ScoreSnapshot, Touchpoint, decode
from cxm_shared.topics import Topics

log = logging.getLogger(__name__)


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
        try:
            touchpoint = decode(Touchpoint, value or b"")
        except ValidationError as error:
            await self._dead_letter(self.topics.touchpoints, key, value, partition, offset, error)
            return None
        outcome = await resolve_touchpoint(
            engine=self.engine,
            touchpoint=touchpoint,
            rules=self.settings.rules,
            secret=self.settings.secret,
        )
        if outcome.customer_id is None:
            if outcome.suppressed:
                metrics.EVENTS.labels(outcome="suppressed").inc()
                return None
            error = UnidentifiedTouchpoint(
                "no usable identifier: "
                + ", ".join(f"{i.type} ({i.reason})" for i in outcome.ignored)
            )
            await self._dead_letter(self.topics.touchpoints, key, value, partition, offset, error)
            return None
        await publish_resolution(
            self.producer,
            self.topics,
            touchpoint=touchpoint,
            customer_id=outcome.customer_id,
            merges=outcome.merges,
        )
        metrics.EVENTS.labels(outcome="duplicate" if outcome.duplicate else "resolved").inc()
        return outcome.customer_id

    async def handle_score(
        self, *, key: bytes | None, value: bytes | None, partition: int, offset: int
    ) -> None:
        try:
            if not key:
                raise ValueError("a score record needs the customer id as key")
            snapshot = None if value is None else decode(ScoreSnapshot, value)
        except (ValidationError, ValueError) as error:
            await self._dead_letter(self.topics.scores, key, value, partition, offset, error)
            return
        await store_score(engine=self.engine, customer_id=key.decode(), snapshot=snapshot)

    async def _dead_letter(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int,
        offset: int,
        error: BaseException,
    ) -> None:
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

    @app.agent(touchpoints_topic, concurrency=1, name="resolve_touchpoints")
    async def resolve_touchpoints(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await pipeline.handle_touchpoint(
                key=event.key,
                value=event.value,
                partition=event.message.partition,
                offset=event.message.offset,
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
