"""A message produced through the real broker with the platform's producer settings comes
back to a consumer intact."""

import uuid

import pytest

from cxm_shared.kafka import ensure_topics, make_consumer, make_producer
from cxm_shared.topics import Topics, TopicSpec

pytestmark = pytest.mark.integration


async def test_produce_and_consume_through_the_broker(kafka_bootstrap: str, topics: Topics) -> None:
    topic = topics.touchpoints
    await ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions=3)])
    payloads = {f"key-{i}".encode(): uuid.uuid4().hex.encode() for i in range(20)}

    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        for key, value in payloads.items():
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()

    consumer = make_consumer(kafka_bootstrap, topic, group_id=f"{topics.prefix}roundtrip")
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        while len(received) < len(payloads):
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"timed out with {len(received)}/{len(payloads)} messages"
            for records in batches.values():
                received.update({r.key: r.value for r in records})
        await consumer.commit()
    finally:
        await consumer.stop()
    assert received == payloads


async def test_ensure_topics_is_idempotent_and_sets_compaction(
    kafka_bootstrap: str, topics: Topics
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    specs = topics.all_specs(partitions=2)
    await ensure_topics(kafka_bootstrap, specs)
    await ensure_topics(kafka_bootstrap, specs)  # second call: nothing to do, no error

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        names = set(await admin.list_topics())
        assert {s.name for s in specs} <= names
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.scores)]
        )
        configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
        assert configs["cleanup.policy"] == "compact"
    finally:
        await admin.close()
