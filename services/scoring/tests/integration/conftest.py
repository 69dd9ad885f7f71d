"""Fixtures for the scoring worker's integration tests (real broker, one app per test)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel

from cxm_scoring.api import create_app
from cxm_scoring.config import ScoringSettings
from cxm_shared.events import encode
from cxm_shared.kafka import make_producer
from cxm_shared.streaming import worker_ready
from cxm_shared.topics import Topics

PARTITIONS = 3


@pytest.fixture
def scoring_settings(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> ScoringSettings:
    return ScoringSettings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topics.prefix,
        topic_partitions=PARTITIONS,
        table_store="memory://",
        data_dir=str(tmp_path / "data"),
        base_stats_interval_s=3600,
    )


@pytest.fixture
def run_scoring() -> Callable[[ScoringSettings], Any]:
    """``async with run_scoring(settings) as app``: the service in-process, worker ready."""

    @asynccontextmanager
    async def run(settings: ScoringSettings) -> AsyncIterator[Any]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            faust_app = app.state.faust
            deadline = time.monotonic() + 60
            while not worker_ready(faust_app) or not faust_app.consumer.assignment():
                assert time.monotonic() < deadline, "scoring worker did not become ready"
                await asyncio.sleep(0.1)
            yield app

    return run


@pytest.fixture
async def publish(kafka_bootstrap: str) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    producer = make_producer(kafka_bootstrap)
    await producer.start()

    async def send(topic: str, key: str, message: BaseModel | bytes) -> None:
        value = message if isinstance(message, bytes) else encode(message)
        await producer.send_and_wait(topic, key=key.encode(), value=value)

    try:
        yield send
    finally:
        await producer.stop()


Record = tuple[bytes | None, bytes | None]


@pytest.fixture
def read_until(kafka_bootstrap: str) -> Callable[..., Awaitable[list[Record]]]:
    """Read a whole topic from the start until ``done(records)`` holds (or fail at deadline)."""

    async def read(
        topic: str, done: Callable[[list[Record]], bool], *, timeout: float = 60.0
    ) -> list[Record]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        records: list[Record] = []
        try:
            deadline = time.monotonic() + timeout
            partitions = None
            while partitions is None:
                partitions = consumer.partitions_for_topic(topic)
                if partitions is None:
                    await consumer._client.force_metadata_update()
                    partitions = consumer.partitions_for_topic(topic)
                    if partitions is None:
                        assert time.monotonic() < deadline, f"topic {topic} never appeared"
                        await asyncio.sleep(0.2)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while not done(records):
                assert time.monotonic() < deadline, f"timed out on {topic}: {len(records)} read"
                batches = await consumer.getmany(timeout_ms=200)
                for batch in batches.values():
                    records.extend((r.key, r.value) for r in batch)
            return records
        finally:
            await consumer.stop()

    return read
