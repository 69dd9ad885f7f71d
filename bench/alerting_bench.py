"""Alerting benchmark: signal on Kafka -> signed webhook received, p50/p99 at a steady rate,
beside a bare consume -> HTTP POST loop measured in the same run (goal: p99 <= 2 x bare).

Runs against the local Kafka and PostgreSQL (a throw-away database and private topics);
loopback only; about 30 s. Writes bench/results/alerting.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import uvicorn
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from cxm_alerting.api import create_app
from cxm_alerting.config import AlertingSettings
from cxm_shared.events import Signal, encode
from cxm_shared.kafka import ensure_topics, make_consumer, make_producer
from cxm_shared.settings import DEV_DATABASE_URL
from cxm_shared.topics import Topics

RATE = 50  # signals per second
DURATION = 8.0  # seconds per measured loop
BOOTSTRAP = os.environ.get("CXM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
SERVER_URL = os.environ.get("CXM_BENCH_DATABASE_URL", DEV_DATABASE_URL)
RESULTS = Path(__file__).parent / "results" / "alerting.json"


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Receiver:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {"service": [], "bare": []}
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = orjson.loads(await request.read())
            now = time.time()
            if request.path == "/bare":
                self.latencies["bare"].append(now - body["sent_ts"])
            else:
                self.latencies["service"].append(now - body["data"]["evidence"][-1]["sent_ts"])
            return web.Response(status=200)

        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        sock = free_socket()
        await web.SockSite(self._runner, sock).start()
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


async def produce_steady(topic: str, make: object) -> None:
    producer = make_producer(BOOTSTRAP, linger_ms=0)
    await producer.start()
    try:
        n = int(RATE * DURATION)
        start = time.monotonic()
        for i in range(n):
            delay = start + i / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            key, value = make(i)  # type: ignore[operator]
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def wait_count(values: list[float], n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(values) < n and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.05)


async def bare_loop(topics: Topics, receiver: Receiver) -> None:
    """The baseline: consume a message, POST it, commit: no routing, storage or signing."""
    topic = topics.name("bench.bare")
    consumer = make_consumer(BOOTSTRAP, topic, group_id=f"{topics.prefix}bare")
    await consumer.start()
    stop = asyncio.Event()

    async def run() -> None:
        async with httpx.AsyncClient() as client:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                for tp, records in batches.items():
                    for record in records:
                        await client.post(f"{receiver.base_url}/bare", content=record.value)
                        await consumer.commit({tp: record.offset + 1})

    task = asyncio.create_task(run())
    # Let the group join before the clock starts.
    await asyncio.sleep(3)

    def make(i: int) -> tuple[bytes, bytes]:
        return f"c{i}".encode(), orjson.dumps({"sent_ts": time.time(), "i": i})

    await produce_steady(topic, make)
    await wait_count(receiver.latencies["bare"], int(RATE * DURATION), 20)
    stop.set()
    await task
    await consumer.stop()


async def service_loop(topics: Topics, receiver: Receiver, database_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        routing = Path(tmp) / "routing.yaml"
        routing.write_text(
            "route:\n  receiver: support\nreceivers:\n  - name: support\n"
            f"    webhook_configs:\n      - url: {receiver.base_url}/hook\n"
            "        secret_ref: BENCH\n"
        )
        settings = AlertingSettings(
            kafka_bootstrap=BOOTSTRAP,
            database_url=database_url,
            topic_prefix=topics.prefix,
            topic_partitions=2,
            routing_config=routing,
            webhook_secrets={"BENCH": "whsec_" + "YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA=="},
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), log_config=None, lifespan="on")
        )
        sock = free_socket()
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes only a flag
            await asyncio.sleep(0.05)
        # Warm-up: group join and connection pools.
        await asyncio.sleep(3)

        def make(i: int) -> tuple[bytes, bytes]:
            signal = Signal(
                signal_id=f"bench:{i}",
                kind="detractor",
                customer_id=f"c{i}",
                occurred_at=datetime.now(UTC),
                evidence={"sent_ts": time.time()},
            )
            return signal.customer_id.encode(), encode(signal)

        await produce_steady(topics.signals, make)
        await wait_count(receiver.latencies["service"], int(RATE * DURATION), 30)
        server.should_exit = True
        await task


async def main() -> int:
    topics = Topics(prefix=f"bench{uuid.uuid4().hex[:8]}.")
    specs = topics.all_specs(partitions=2)
    await ensure_topics(
        BOOTSTRAP, [*specs, *[s.__class__(topics.name("bench.bare"), 2) for s in specs[:1]]]
    )
    name = f"cxm_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    receiver = Receiver()
    await receiver.start()
    try:
        await bare_loop(topics, receiver)
        await service_loop(topics, receiver, database_url)
    finally:
        await receiver.stop()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "count": len(values),
            "p50_ms": round(statistics.median(values) * 1000, 2),
            "p99_ms": round(pct(values, 0.99) * 1000, 2),
        }

    bare = summary(receiver.latencies["bare"])
    service = summary(receiver.latencies["service"])
    expected = int(RATE * DURATION)
    result = {
        "benchmark": "signal on Kafka -> signed webhook received",
        "rate_per_second": RATE,
        "duration_seconds": DURATION,
        "expected_per_loop": expected,
        "service": service,
        "bare_consume_post": bare,
        "p50_ratio": round(service["p50_ms"] / bare["p50_ms"], 2),
        "p99_ratio": round(service["p99_ms"] / bare["p99_ms"], 2),
        "goal": "p99_ratio <= 2",
        "measured_at": datetime.now(UTC).isoformat(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if service["count"] == expected and bare["count"] == expected else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
