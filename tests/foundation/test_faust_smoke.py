"""faust-streaming on the real broker: an agent with a table processes messages, the table's
changelog topic exists, and a restarted worker gets the table's values back from it."""

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from cxm_shared.kafka import ensure_topics, make_producer
from cxm_shared.streaming import attach_prometheus_sensors, hosted, make_faust_app, worker_ready
from cxm_shared.topics import Topics, TopicSpec

pytestmark = pytest.mark.integration


def build_counter(*, app_id: str, source: str, bootstrap: str, datadir: Path):
    app = make_faust_app(app_id, bootstrap=bootstrap, datadir=datadir, partitions=2)
    sensors = attach_prometheus_sensors(app, name_prefix="smoke_faust")
    words = app.topic(source, key_serializer="raw", value_serializer="json", partitions=2)
    word_counts = app.Table("word_counts", default=int, partitions=2)
    seen: list[str] = []

    @app.agent(words, concurrency=1)
    async def count_words(stream):
        async for word in stream:
            word_counts[word] += 1
            seen.append(word)

    return app, word_counts, seen, sensors


async def send_words(bootstrap: str, topic: str, words: list[str]) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        for word in words:
            await producer.send_and_wait(topic, key=word.encode(), value=f'"{word}"'.encode())
    finally:
        await producer.stop()


async def wait_for(predicate, *, timeout: float = 60.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_table_values_survive_a_worker_restart(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    app_id = f"{topics.prefix}smoke"
    source = f"{topics.prefix}smoke-words"
    await ensure_topics(kafka_bootstrap, [TopicSpec(source, partitions=2)])
    first = ["apple", "banana", "apple", "cherry", "apple", "banana"]

    app, counts, seen, sensors = build_counter(
        app_id=app_id, source=source, bootstrap=kafka_bootstrap, datadir=tmp_path / "one"
    )
    async with hosted(app):
        await wait_for(lambda: worker_ready(app), what="first worker ready")
        await send_words(kafka_bootstrap, source, first)
        await wait_for(lambda: len(seen) == len(first), what="first batch processed")
        assert dict(counts.items()) == dict(Counter(first))
        # faust's own sensors, as Prometheus metrics: every word received, every table write
        received = sensors.get_sample_value("smoke_faust_messages_received_total") or 0
        assert received >= len(first)
        writes = sensors.get_sample_value(
            "smoke_faust_table_operations_total",
            {"table": f"table.{counts.name}", "operation": "keys_updated"},
        )
        assert writes is not None and writes >= len(first)

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert f"{app_id}-word_counts-changelog" in await admin.list_topics()
    finally:
        await admin.close()

    # A new worker with an empty local store: the table comes back from the changelog.
    app2, counts2, seen2, _ = build_counter(
        app_id=app_id, source=source, bootstrap=kafka_bootstrap, datadir=tmp_path / "two"
    )
    async with hosted(app2):
        await wait_for(lambda: worker_ready(app2), what="second worker recovered")
        assert dict(counts2.items()) == dict(Counter(first))
        await send_words(kafka_bootstrap, source, ["cherry"])
        await wait_for(lambda: len(seen2) == 1, what="message after restart")
        assert counts2["cherry"] == 2
        assert seen2 == ["cherry"], "committed messages must not be processed again"
