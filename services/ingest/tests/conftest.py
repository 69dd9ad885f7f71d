"""Fixtures of the ingest tests: one in-process service per module on a private database and
private topics, plus a reader that returns everything on the touchpoints topic."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from fastapi import FastAPI

from cxm_ingest.api import create_app
from cxm_ingest.config import IngestSettings, hash_write_key
from cxm_shared.events import Touchpoint, decode
from cxm_shared.kafka import make_consumer
from cxm_shared.testing.infra import fresh_database
from cxm_shared.topics import Topics

WEB_KEY = "test-web-key"
POS_KEY = "test-pos-key"


def write_keys() -> str:
    return f"web-site:web:{hash_write_key(WEB_KEY)},pos:store:{hash_write_key(POS_KEY)}"


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    settings: IngestSettings
    topics: Topics
    touchpoints: Callable[[], Awaitable[list[tuple[bytes, Touchpoint]]]]
    placed: Callable[[], Awaitable[list[tuple[int, Touchpoint]]]]  # (partition, touchpoint)


async def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Every message on ``topic`` up to its current end (deterministic, no sleeps)."""
    return [(k, v) for _, k, v in await read_partitions(bootstrap, topic)]


async def read_partitions(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes]]:
    """``(partition, key, value)`` of every message on ``topic`` up to its current end, in
    offset order within each partition."""
    consumer = make_consumer(bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: list[tuple[int, bytes, bytes]] = []
        while True:
            positions = [await consumer.position(tp) for tp in ends]
            if all(pos >= end for pos, end in zip(positions, ends.values(), strict=True)):
                break
            batch = await consumer.getmany(*partitions, timeout_ms=1000)
            for records in batch.values():
                out.extend((r.partition, r.key, r.value) for r in records)
        return out
    finally:
        await consumer.stop()


@pytest_asyncio.fixture(scope="module")
async def scratch_database(postgres_url: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_url, prefix="cxm_test") as url:
        yield url


def make_settings(bootstrap: str, database_url: str, prefix: str, **extra: Any) -> IngestSettings:
    return IngestSettings(
        kafka_bootstrap=bootstrap,
        database_url=database_url,
        topic_prefix=prefix,
        topic_partitions=3,
        write_keys=write_keys(),
        **extra,
    )


@pytest_asyncio.fixture(scope="module")
async def service(kafka_bootstrap: str, scratch_database: str) -> AsyncIterator[Service]:
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
    settings = make_settings(kafka_bootstrap, scratch_database, topics.prefix)
    app = create_app(settings)

    async def touchpoints() -> list[tuple[bytes, Touchpoint]]:
        raw = await read_topic(kafka_bootstrap, topics.touchpoints)
        return [(k, decode(Touchpoint, v)) for k, v in raw]

    async def placed() -> list[tuple[int, Touchpoint]]:
        raw = await read_partitions(kafka_bootstrap, topics.touchpoints)
        return [(p, decode(Touchpoint, v)) for p, _, v in raw]

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield Service(app, client, settings, topics, touchpoints, placed)


@pytest.fixture
def recorded(service: Service) -> Callable[[str], Awaitable[None]]:
    """Wait (bounded) until the dedup store holds an id: it is written in the background."""

    async def wait(event_id: str) -> None:
        dedup = service.app.state.intake.dedup
        deadline = time.monotonic() + 10
        while not await dedup.seen([event_id]):
            assert time.monotonic() < deadline, f"{event_id} never recorded"
            await asyncio.sleep(0.01)

    return wait


@pytest.fixture
def web_auth() -> httpx.BasicAuth:
    return httpx.BasicAuth(WEB_KEY, "")
