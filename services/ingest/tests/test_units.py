"""Pure pieces without Kafka or PostgreSQL: keys, auth, time correction, settings, and the
publisher against a stalled fake producer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from cxm_ingest.auth import RateLimiter, WriteKeys, key_from_authorization
from cxm_ingest.config import IngestSettings, hash_write_key
from cxm_ingest.errors import KafkaUnavailable, RateLimited, Unauthorized
from cxm_ingest.events import service as service_module
from cxm_ingest.events.segment import corrected_time, snake
from cxm_ingest.events.service import Candidate, Publisher, partition_key


def test_key_prefers_person_level_ids_and_hides_values() -> None:
    a = partition_key({"user_id": "u1", "anonymous_id": "x"})
    b = partition_key({"user_id": "u1", "device_id": "y"})
    c = partition_key({"anonymous_id": "x"})
    assert a == b != c
    assert partition_key({"email": " A@B.com "}) == partition_key({"email": "a@b.com"})
    assert b"u1" not in a


def test_write_keys_are_hashed_and_checked() -> None:
    keys = WriteKeys([("pos", "store", hash_write_key("secret"))])
    assert keys.authenticate("secret").channel == "store"
    with pytest.raises(Unauthorized):
        keys.authenticate("Secret")
    with pytest.raises(Unauthorized):
        keys.authenticate(None)
    assert key_from_authorization("Basic c2VjcmV0Og==") == "secret"  # "secret:"
    with pytest.raises(Unauthorized):
        key_from_authorization("Basic !!!")


def test_dev_key_refused_outside_local_mode() -> None:
    prod = {
        "mode": "production",
        "database_url": "postgresql+asyncpg://u:p@db/x",
        "api_tokens": "t",
    }
    assert all(s != "dev" for s, *_ in IngestSettings(**prod).write_key_entries())
    with pytest.raises(ValidationError, match="dev write key"):
        IngestSettings(**prod, write_keys=f"dev:web:{hash_write_key('dev-write-key')}")
    with pytest.raises(ValidationError, match="source:channel:sha256hex"):
        IngestSettings(write_keys="plain-key")


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(rate=1000, burst=2)
    limiter.take("s", 2)
    with pytest.raises(RateLimited) as exc:
        limiter.take("s", 1)
    assert exc.value.headers["Retry-After"] == "1"


def test_segment_time_correction_is_bounded_and_never_in_the_future() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    ts = now - timedelta(hours=3, minutes=1)
    sent = now - timedelta(hours=3)
    assert corrected_time(timestamp=ts, sent_at=sent, received_at=now, max_skew=86400) == (
        now - timedelta(minutes=1)
    )
    assert corrected_time(timestamp=ts, sent_at=sent, received_at=now, max_skew=3600) == (
        ts + timedelta(hours=1)
    )
    future = now + timedelta(days=1)
    assert corrected_time(timestamp=future, sent_at=None, received_at=now, max_skew=0) == now
    assert corrected_time(timestamp=None, sent_at=sent, received_at=now, max_skew=0) == now


def test_event_names_become_snake_case_types() -> None:
    assert snake("Order Completed") == "order_completed"
    assert snake("  42 things!") == "e_42_things"


class StalledProducer:
    """A producer whose broker never drains: batches are taken, no ack ever comes."""

    def __init__(self) -> None:
        self.batches = 0

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> _FakeBatch:
        return _FakeBatch()

    async def send_batch(self, batch: _FakeBatch, topic: str, *, partition: int) -> Any:
        self.batches += 1
        if self.batches > 1:  # one batch in flight per partition, as with idempotence
            await asyncio.Event().wait()
        return asyncio.get_running_loop().create_future()  # never acked


class _FakeBatch:
    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object:
        return object()


async def test_publisher_answers_503_when_kafka_does_not_ack_and_bounds_the_backlog(
    monkeypatch,
) -> None:
    publisher = Publisher("unused:9092", "t", timeout=0.2, retry_after=3)
    publisher._producer = StalledProducer()  # type: ignore[assignment]
    record = Candidate(0, "e-0", b"k" * 32, b"{}")
    try:
        with pytest.raises(KafkaUnavailable) as waited:
            await publisher.publish([record])
        assert waited.value.headers["Retry-After"] == "3"
        # Records pile up behind the stalled batch (one in flight, one handed to the stalled
        # drain, the rest waiting); past the limit the answer is immediate.
        monkeypatch.setattr(service_module, "LANE_LIMIT", 5)
        for _ in range(6):
            with pytest.raises(KafkaUnavailable):
                await publisher.publish([record])
        started = asyncio.get_running_loop().time()
        with pytest.raises(KafkaUnavailable, match="too many events waiting"):
            await publisher.publish([record])
        assert asyncio.get_running_loop().time() - started < 0.1
    finally:
        await publisher.close_lanes()
