"""Ingest benchmark: HTTP API -> Kafka vs a bare aiokafka producer, in one run.

Runs the real service (``python -m cxm_ingest``) under uvicorn in a subprocess on a free
port, against the local Kafka and a scratch PostgreSQL database, and measures:

- batched: events/s through ``POST /v1/events/batch`` (500 events a request) until acked;
- single: requests/s of ``POST /v1/events`` (one event each);
- bare: events/s of an ``acks=all`` idempotent aiokafka producer sending the same
  normalised payloads (send() futures, then gather, per 500), the ceiling for the same broker.

Writes ``bench/results/ingest.json`` with each figure beside the bare baseline as a ratio.
The load generator is a minimal keep-alive HTTP/1.1 client on asyncio streams so that the
client's own cost stays small next to the service's. Bounded: ~60 s in all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cxm_ingest.auth import Source
from cxm_ingest.events.service import encode_touchpoint, normalise
from cxm_shared.kafka import ensure_topics, make_producer
from cxm_shared.topics import TopicSpec

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ingest.json"
KAFKA = os.environ.get("CXM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
PG_SERVER = os.environ.get(
    "CXM_BENCH_POSTGRES", "postgresql+asyncpg://cxm:cxm-dev-password@127.0.0.1:5433/cxm"
)
KEY = "bench-write-key"
BATCH = 500
BATCHED_SECONDS = float(os.environ.get("CXM_BENCH_SECONDS", "12"))
SINGLE_SECONDS = float(os.environ.get("CXM_BENCH_SINGLE_SECONDS", "8"))
CONCURRENCY = 8
SINGLE_CONCURRENCY = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_event(i: int, run: str) -> dict:
    return {
        "event_id": f"{run}-{i}",
        "type": "purchase" if i % 3 == 0 else "page_view",
        "touchpoint": "checkout" if i % 3 == 0 else "product_page",
        "occurred_at": "2026-03-01T09:30:00+09:00",
        "identifiers": {"user_id": f"u-{i % 5000}", "cookie_id": f"c-{i % 7000}"},
        "traits": {"region": "kanto"},
        "properties": (
            {
                "order_id": f"o-{i}",
                "amount": 4200.0,
                "currency": "JPY",
                "items": [{"sku": "sku-1", "category": "shoes", "price": 4200.0, "quantity": 1}],
            }
            if i % 3 == 0
            else {"url": "https://shop.example/p/1", "title": "Product"}
        ),
        "context": {"locale": "ja-JP", "user_agent": "Mozilla/5.0 (bench)"},
    }


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, auth: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status


async def run_http(
    port: int, path: str, bodies: list[bytes], per_request: int, seconds: float, concurrency: int
):
    import base64

    auth = base64.b64encode(f"{KEY}:".encode()).decode()
    next_index = 0
    done = 0
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal next_index, done, failures
        conn = Conn(port)
        while time.perf_counter() < deadline and next_index < len(bodies):
            body = bodies[next_index]
            next_index += 1
            status = await conn.post(path, body, auth)
            if status == 200:
                done += per_request
            else:
                failures += 1
        if conn.writer is not None:
            conn.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return done, failures, elapsed


async def run_bare(payloads: list[tuple[bytes, bytes]], topic: str) -> tuple[int, float]:
    await ensure_topics(KAFKA, [TopicSpec(topic, 6)])
    producer = make_producer(KAFKA, client_id="bench-bare")
    await producer.start()
    try:
        started = time.perf_counter()

        async def one_batch(chunk: list[tuple[bytes, bytes]]) -> None:
            futures = [await producer.send(topic, v, key=k) for k, v in chunk]
            await asyncio.gather(*futures)

        chunks = [payloads[i : i + BATCH] for i in range(0, len(payloads), BATCH)]
        for group in range(0, len(chunks), CONCURRENCY):
            await asyncio.gather(*(one_batch(c) for c in chunks[group : group + CONCURRENCY]))
        return len(payloads), time.perf_counter() - started
    finally:
        await producer.stop()


async def main() -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"bench-{run}."
    dbname = f"cxm_bench_{run}"
    admin = create_async_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{dbname}"'))
    db_url = PG_SERVER.rsplit("/", 1)[0] + f"/{dbname}"
    port = free_port()
    env = {
        **os.environ,
        "CXM_INGEST_PORT": str(port),
        "CXM_KAFKA_BOOTSTRAP": KAFKA,
        "CXM_DATABASE_URL": db_url,
        "CXM_TOPIC_PREFIX": prefix,
        "CXM_WRITE_KEYS": f"bench:web:{hashlib.sha256(KEY.encode()).hexdigest()}",
        "CXM_RATE_LIMIT_EVENTS_PER_SECOND": "10000000",
        "CXM_RATE_LIMIT_BURST": "10000000",
        "CXM_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cxm_ingest", env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = Conn(port)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /readyz HTTP/1.1\r\nHost: b\r\n\r\n")
                line = await reader.readline()
                writer.close()
                if b" 200 " in line:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.returncode is not None:
                raise SystemExit("ingest did not become ready")
            await asyncio.sleep(0.2)
        del conn

        # Batched: enough distinct batches for the time box (each event id unique).
        n_batches = 400
        events = [make_event(i, f"b{run}") for i in range(n_batches * BATCH)]
        batch_bodies = [
            orjson.dumps({"events": events[i : i + BATCH]}) for i in range(0, len(events), BATCH)
        ]
        await run_http(
            port, "/v1/events/batch", batch_bodies[:4], BATCH, 10, CONCURRENCY
        )  # warm-up
        b_done, b_fail, b_elapsed = await run_http(
            port, "/v1/events/batch", batch_bodies[4:], BATCH, BATCHED_SECONDS, CONCURRENCY
        )
        single_bodies = [orjson.dumps(make_event(i, f"s{run}")) for i in range(60_000)]
        s_done, s_fail, s_elapsed = await run_http(
            port, "/v1/events", single_bodies, 1, SINGLE_SECONDS, SINGLE_CONCURRENCY
        )

        # Bare producer: the same normalised payloads the service produced, same count.
        src = Source("bench", "web")
        now = datetime.now(UTC)
        payloads = []
        for ev in events[: max(b_done, BATCH)]:
            tp, key = normalise(ev, source=src, received_at=now, max_future=timedelta(hours=1))
            payloads.append((key, encode_touchpoint(tp)))
        bare_n, bare_elapsed = await run_bare(payloads, f"{prefix}bare")
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        await admin.dispose()

    batched_eps = b_done / b_elapsed
    bare_eps = bare_n / bare_elapsed
    single_rps = s_done / s_elapsed
    result = {
        "machine": {"cpus": os.cpu_count(), "note": "2 cores shared with Kafka, PostgreSQL"},
        "batched": {
            "events": b_done,
            "failed_requests": b_fail,
            "seconds": round(b_elapsed, 2),
            "events_per_second": round(batched_eps),
            "ratio_to_bare": round(batched_eps / bare_eps, 3),
            "goal_events_per_second": 30_000,
            "goal_ratio": 0.30,
        },
        "single": {
            "requests": s_done,
            "failed_requests": s_fail,
            "seconds": round(s_elapsed, 2),
            "requests_per_second": round(single_rps),
            "ratio_to_bare_events": round(single_rps / bare_eps, 4),
            "goal_requests_per_second": 4_000,
        },
        "bare_producer": {
            "events": bare_n,
            "seconds": round(bare_elapsed, 2),
            "events_per_second": round(bare_eps),
        },
        "batch_size": BATCH,
        "concurrency": {"batched": CONCURRENCY, "single": SINGLE_CONCURRENCY},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
