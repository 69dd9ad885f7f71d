"""503 when Kafka is unavailable; huge bodies and gzip bombs refused with bounded memory."""

from __future__ import annotations

import socket
import tracemalloc
import uuid
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from cxm_ingest.api import create_app
from cxm_ingest.config import IngestSettings, hash_write_key

pytestmark = pytest.mark.integration

EVENT = {
    "event_id": "e-1",
    "type": "page_view",
    "occurred_at": "2026-03-01T00:00:00Z",
    "identifiers": {"anonymous_id": "a-1"},
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_kafka_unavailable_is_503_with_retry_after(scratch_database: str) -> None:
    settings = IngestSettings(
        kafka_bootstrap=f"127.0.0.1:{closed_port()}",
        database_url=scratch_database,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        write_keys=f"web-site:web:{hash_write_key('k')}",
        produce_timeout_seconds=0.5,
        retry_after_seconds=7,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            auth = httpx.BasicAuth("k", "")
            r = await client.post("/v1/events", json=EVENT, auth=auth)
            assert r.status_code == 503
            assert r.headers["retry-after"] == "7"
            assert r.json()["code"] == "kafka_unavailable"
            # Segment clients retry 5xx, so the same answer on their routes (never 401/403).
            r = await client.post(
                "/v1/batch",
                json={"batch": [{"type": "track", "event": "x", "messageId": "m", "userId": "u"}]},
                auth=auth,
            )
            assert r.status_code == 503 and r.headers["retry-after"] == "7"
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200


async def _chunks(total: int, chunk: bytes) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield chunk
        sent += len(chunk)


async def test_huge_streamed_body_is_413_without_buffering_it(service) -> None:
    """100 MB without Content-Length: refused after ~500 KB, memory stays bounded."""
    chunk = b" " * 65_536
    tracemalloc.start()
    try:
        r = await service.client.post(
            "/v1/events/batch",
            content=_chunks(100 * 1024 * 1024, chunk),
            headers={"content-type": "application/json"},
            auth=httpx.BasicAuth("test-web-key", ""),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while refusing a 100 MB body"


async def test_declared_huge_body_is_413_before_reading(service) -> None:
    r = await service.client.post(
        "/v1/events/batch",
        content=_chunks(10, b"{}"),
        headers={"content-type": "application/json", "content-length": str(10**9)},
        auth=httpx.BasicAuth("test-web-key", ""),
    )
    assert r.status_code == 413


async def test_gzip_bomb_is_413_with_bounded_memory(service) -> None:
    # 256 MB of zeros inflates from ~250 KB of gzip.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"0" * (1 << 20)
    bomb = b"".join(compressor.compress(block) for _ in range(256)) + compressor.flush()
    assert len(bomb) < 2 * 1024 * 1024
    tracemalloc.start()
    try:
        r = await service.client.post(
            "/v1/batch",
            content=bomb,
            headers={"content-type": "application/json", "content-encoding": "gzip"},
            auth=httpx.BasicAuth("test-web-key", ""),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes for a 256 MB gzip bomb"
    assert (await service.client.get("/healthz")).status_code == 200


async def test_dedup_window_purge_removes_only_old_ids(service) -> None:
    from datetime import timedelta

    from sqlalchemy import text

    dedup = service.app.state.intake.dedup
    old, fresh = f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"
    dedup.record([old, fresh], source="web-site")
    await dedup.flush()
    async with dedup._engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE ingest.accepted_events SET accepted_at = now() - interval '8 days' "
                "WHERE event_id = :id"
            ),
            {"id": old},
        )
    assert await dedup.purge(older_than=timedelta(days=7)) >= 1
    assert await dedup.seen([old, fresh]) == {fresh}
