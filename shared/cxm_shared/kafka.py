"""The one place that builds Kafka clients, so every service gets the same safe defaults."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from cxm_shared.errors import DependencyUnavailable
from cxm_shared.topics import TopicSpec

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


def make_producer(bootstrap: str, **overrides: Any) -> AIOKafkaProducer:
    """A producer whose acknowledgement means the write is durable.

    aiokafka defaults to ``acks=1`` without idempotence; a 2xx we give a client must only
    follow a write every in-sync replica has, written once even when the client retries.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 15_000,
        "client_id": overrides.pop("client_id", "cxm"),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(
    bootstrap: str, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer that commits only what the caller says is done (at-least-once)."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def ensure_topics(
    bootstrap: str, specs: Iterable[TopicSpec], *, replication: int = 1
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    wanted = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=replication,
            topic_configs=s.config(),
        )
        for s in specs
    ]
    if not wanted:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t.name not in existing]
        if not missing:
            return
        response = await admin.create_topics(missing)
        for topic, code, message in _topic_errors(response):
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise DependencyUnavailable("kafka", f"create topic {topic}: {code} {message}")
        log.info("topics created count=%d", len(missing))
    except KafkaError as exc:
        raise DependencyUnavailable("kafka", type(exc).__name__) from exc
    finally:
        await admin.close()


async def drop_topics(bootstrap: str, *, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (tests and benchmarks clean up
    the private topics they created)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    out = []
    for item in response.topic_errors:
        topic, code = item[0], item[1]
        message = item[2] if len(item) > 2 else None
        out.append((topic, code, message))
    return out


class KafkaProbe:
    """Answers "does the cluster answer a metadata request now?" for ``/readyz``.

    Uses its own small client so the answer does not depend on a producer or consumer that
    may be busy, and never raises.
    """

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._client: AIOKafkaClient | None = None

    async def __call__(self, timeout: float = 2.0) -> bool:
        try:
            if self._client is None:
                client = AIOKafkaClient(bootstrap_servers=self._bootstrap, request_timeout_ms=3000)
                try:
                    await asyncio.wait_for(client.bootstrap(), timeout)
                except BaseException:
                    await client.close()
                    raise
                self._client = client
            await asyncio.wait_for(self._client.fetch_all_metadata(), timeout)
            return True
        except (KafkaError, TimeoutError, OSError):
            return False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
