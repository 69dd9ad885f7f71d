"""The lag exporter reports what an operator reads from ``kafka-consumer-groups --describe``:
per group and partition, messages appended but not yet committed; and dead letters as the
end offsets of ``*.dlq`` topics. Against the real broker, on a private topic prefix."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from cxm_shared.kafka import ensure_topics, make_consumer, make_producer
from cxm_shared.lag import LagExporter, LagExporterSettings, LagSnapshot
from cxm_shared.topics import Topics, TopicSpec

pytestmark = pytest.mark.integration


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_lag_is_end_minus_committed_and_never_negative() -> None:
    snapshot = LagSnapshot(
        end_offsets={("cx.scores", 0): 10, ("cx.scores", 1): 4},
        committed={("cxm-profile", "cx.scores", 0): 7, ("cxm-profile", "cx.scores", 1): 6},
    )
    assert list(snapshot.lags()) == [
        ("cxm-profile", "cx.scores", 0, 3),
        ("cxm-profile", "cx.scores", 1, 0),
    ]


async def test_exporter_reports_lag_per_group_and_partition_and_dlq_size(
    kafka_bootstrap: str, topics: Topics
) -> None:
    touchpoints, dlq = topics.touchpoints, Topics.dlq(topics.touchpoints)
    other_prefix_topic = f"x{topics.prefix}cx.touchpoints"  # another deployment's topic
    await ensure_topics(
        kafka_bootstrap,
        [TopicSpec(touchpoints, 2), TopicSpec(dlq, 1), TopicSpec(other_prefix_topic, 1)],
    )
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(5):
            await producer.send_and_wait(touchpoints, b"m", partition=0)
        for _ in range(2):
            await producer.send_and_wait(touchpoints, b"m", partition=1)
        await producer.send_and_wait(dlq, b"poison")
        await producer.send_and_wait(other_prefix_topic, b"m")
    finally:
        await producer.stop()

    group = f"{topics.prefix}cxm-profile"
    consumer = make_consumer(kafka_bootstrap, group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(touchpoints, 0)])
        await consumer.commit({TopicPartition(touchpoints, 0): OffsetAndMetadata(3, "")})
    finally:
        await consumer.stop()

    registry = CollectorRegistry()
    settings = LagExporterSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=topics.prefix)
    exporter = LagExporter(settings, registry=registry)
    try:
        assert await exporter.poll_once()
    finally:
        await exporter.reader.close()

    lag = "cxm_kafka_consumer_lag_messages"
    assert sample(registry, lag, group="cxm-profile", topic="cx.touchpoints", partition="0") == 2
    # partition 1 has no committed offset: no lag series (the group never consumed it)
    assert sample(registry, lag, group="cxm-profile", topic="cx.touchpoints", partition="1") is None
    end = "cxm_kafka_topic_end_offset"
    assert sample(registry, end, topic="cx.touchpoints", partition="1") == 2
    assert sample(registry, end, topic="cx.touchpoints.dlq", partition="0") == 1
    exported_topics = {
        s.labels["topic"]
        for metric in registry.collect()
        if metric.name == end
        for s in metric.samples
    }
    assert exported_topics == {"cx.touchpoints", "cx.touchpoints.dlq"}
    assert sample(registry, "cxm_kafka_lag_polls_total", outcome="ok") == 1
    assert exporter.fresh()


async def test_unreachable_cluster_is_counted_not_raised() -> None:
    registry = CollectorRegistry()
    settings = LagExporterSettings(kafka_bootstrap="127.0.0.1:1", topic_prefix="")
    exporter = LagExporter(settings, registry=registry)
    assert not await exporter.poll_once()
    assert sample(registry, "cxm_kafka_lag_polls_total", outcome="error") == 1
    assert not exporter.fresh()
