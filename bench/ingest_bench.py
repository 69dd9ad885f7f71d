"""Ingest benchmark: HTTP API -> Kafka vs bare aiokafka producer loops, in one run.

Starts the real service (``python -m cxm_ingest``) twice on free ports, once with one
process and once with ``CXM_INGEST_WORKERS`` processes, against the local Kafka and a scratch
PostgreSQL database, then for each of ``CXM_BENCH_ROUNDS`` rounds measures, back to back:

- bare producer, ``send()`` per record: an ``acks=all`` idempotent aiokafka producer sending
  the same normalised payloads (8 x 500 in flight, gather per 500) -- the baseline the goal
  ratio is stated against;
- bare producer, record batches: the same payloads through ``create_batch()`` /
  ``send_batch()`` per partition, the cheapest way aiokafka has (a stricter baseline);
- for each service: batched events/s through ``POST /v1/events/batch`` (500 events a
  request, every one acked by Kafka before the 200), then single-event requests/s of
  ``POST /v1/events``.

Every ratio is taken against the bare figures of the same round, so a machine shared with
other work moves numerator and denominator together. Each phase also records the CPU
seconds the service processes and the load generator used. The load generator is a minimal
keep-alive HTTP/1.1 client on uvloop streams sending pre-encoded bodies, so its own cost
stays small next to the service's. Bounded: ~80 s with the defaults.

``CXM_BENCH_PROFILE=/tmp/ingest.txt`` runs the one-process service under pyinstrument and
writes its profile there (and a ``.pyisession`` beside it) when the bench stops it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cxm_ingest.auth import Source
from cxm_ingest.events.service import encode_touchpoint, normalise
from cxm_shared.kafka import ensure_topics, make_producer
from cxm_shared.topics import TopicSpec

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("CXM_BENCH_RESULTS", ROOT / "bench" / "results" / "ingest.json"))
KAFKA = os.environ.get("CXM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
PG_SERVER = os.environ.get(
    "CXM_BENCH_POSTGRES", "postgresql+asyncpg://cxm:cxm-dev-password@127.0.0.1:5433/cxm"
)
KEY = "bench-write-key"
BATCH = 500
ROUNDS = int(os.environ.get("CXM_BENCH_ROUNDS", "3"))
BATCHED_SECONDS = float(os.environ.get("CXM_BENCH_SECONDS", "4"))
SINGLE_SECONDS = float(os.environ.get("CXM_BENCH_SINGLE_SECONDS", "3"))
WORKERS = int(os.environ.get("CXM_BENCH_WORKERS", "2"))
BARE_EVENTS = 100_000
BATCHED_CONNECTIONS = 16  # keep-alive connections; enough to spread over the workers
SINGLE_CONNECTIONS = 64
BARE_IN_FLIGHT = 8  # batches of 500 in flight in the bare loops
GOAL_EVENTS_PER_SECOND = 30_000
GOAL_RATIO = 0.30
GOAL_REQUESTS_PER_SECOND = 4_000

# Runs the service under pyinstrument. uvicorn re-raises SIGTERM after its graceful shutdown
# with the handler that was installed before it, so that handler writes the profile.
PROFILED = """
import signal, sys
from pyinstrument import Profiler
profiler = Profiler(interval=0.001)
def done(*_):
    session = profiler.stop()
    session.save({out!r} + ".pyisession")
    with open({out!r}, "w") as f:
        f.write(profiler.output_text(color=False))
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
profiler.start()
from cxm_ingest.__main__ import main
main()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_event(i: int, run: str) -> dict[str, Any]:
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children (the uvicorn workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(entry.name))
    for p in pids:
        try:
            fields = (Path("/proc") / str(p) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, head: bytes, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status = int((await self.reader.readline()).split()[1])
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

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Ingest:
    """One ``python -m cxm_ingest`` subprocess."""

    def __init__(self, workers: int, db_url: str, prefix: str, profile: str | None) -> None:
        self.workers = workers
        self.port = free_port()
        self.db_url = db_url
        self.prefix = prefix
        self.profile = profile
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {
            **os.environ,
            "CXM_INGEST_PORT": str(self.port),
            "CXM_INGEST_WORKERS": str(self.workers),
            "CXM_KAFKA_BOOTSTRAP": KAFKA,
            "CXM_DATABASE_URL": self.db_url,
            "CXM_TOPIC_PREFIX": self.prefix,
            "CXM_WRITE_KEYS": f"bench:web:{hashlib.sha256(KEY.encode()).hexdigest()}",
            "CXM_RATE_LIMIT_EVENTS_PER_SECOND": "10000000",
            "CXM_RATE_LIMIT_BURST": "10000000",
            "CXM_LOG_LEVEL": "WARNING",
        }
        command = (
            ["-c", PROFILED.format(out=self.profile)] if self.profile else ["-m", "cxm_ingest"]
        )
        self.proc = await asyncio.create_subprocess_exec(sys.executable, *command, env=env)

    async def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"GET /readyz HTTP/1.1\r\nHost: b\r\n\r\n")
                line = await reader.readline()
                writer.close()
                if b" 200 " in line:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.returncode is not None:
                raise SystemExit(f"ingest ({self.workers} workers) did not become ready")
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 120 if self.profile else 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def scrape(ingest: Ingest) -> dict[str, float]:
    """Sums and counts of the service's latency histograms (one process's, with workers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ingest.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
    raw = (await reader.read()).decode()
    writer.close()
    out: dict[str, float] = {}
    for line in raw.splitlines():
        for name in ("cxm_ingest_kafka_produce_seconds", "cxm_ingest_request_seconds"):
            for part in ("_sum", "_count"):
                if line.startswith(name + part):
                    out[name + part] = out.get(name + part, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


async def run_http(
    ingest: Ingest, path: str, bodies: list[bytes], per_request: int, seconds: float, conns: int
) -> dict[str, Any]:
    auth = base64.b64encode(f"{KEY}:".encode()).decode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic {auth}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    next_index = 0
    done = 0
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal next_index, done, failures
        conn = Conn(ingest.port)
        try:
            while time.perf_counter() < deadline and next_index < len(bodies):
                body = bodies[next_index]
                next_index += 1
                if await conn.post(head, body) == 200:
                    done += per_request
                else:
                    failures += 1
        finally:
            conn.close()

    assert ingest.proc is not None
    before = await scrape(ingest)
    service_cpu = cpu_seconds(ingest.proc.pid)
    client_cpu = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    elapsed = time.perf_counter() - started
    service_cpu = cpu_seconds(ingest.proc.pid) - service_cpu
    after = await scrape(ingest)

    def mean_ms(name: str) -> float | None:
        n = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
        total = after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)
        return round(total / n * 1000, 2) if n else None

    return {
        "count": done,
        "failed_requests": failures,
        "ran_out_of_bodies": next_index >= len(bodies),
        "seconds": round(elapsed, 2),
        "per_second": round(done / elapsed),
        "service_cpu_seconds": round(service_cpu, 2),
        # CPU the service spent per event (batched) or request (single): less sensitive to
        # what else runs on the machine than the rate, as long as the service was busy.
        "service_cpu_us_each": round(service_cpu / max(done, 1) * 1e6, 1),
        "load_generator_cpu_seconds": round(time.process_time() - client_cpu, 2),
        # From the service's /metrics (one worker's when there are several).
        "mean_request_ms": mean_ms("cxm_ingest_request_seconds"),
        "mean_kafka_produce_ms": mean_ms("cxm_ingest_kafka_produce_seconds"),
    }


async def run_bare(payloads: list[tuple[bytes, bytes]], topic: str, mode: str) -> dict[str, Any]:
    producer = make_producer(KAFKA, client_id=f"bench-bare-{mode}")
    await producer.start()
    partitioner = DefaultPartitioner()
    try:
        partitions = sorted(await producer.partitions_for(topic))

        async def each(chunk: list[tuple[bytes, bytes]]) -> None:
            futures = [await producer.send(topic, v, key=k) for k, v in chunk]
            await asyncio.gather(*futures)

        async def batched(chunk: list[tuple[bytes, bytes]]) -> None:
            groups: dict[int, list[tuple[bytes, bytes]]] = {}
            for k, v in chunk:
                groups.setdefault(partitioner(k, partitions, partitions), []).append((k, v))
            futures = []
            for partition, group in groups.items():
                batch = producer.create_batch()
                for k, v in group:
                    if batch.append(key=k, value=v, timestamp=None) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=k, value=v, timestamp=None)
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*futures)

        one = each if mode == "send_each" else batched
        chunks = [payloads[i : i + BATCH] for i in range(0, len(payloads), BATCH)]
        cpu = time.process_time()
        started = time.perf_counter()
        for group in range(0, len(chunks), BARE_IN_FLIGHT):
            await asyncio.gather(*(one(c) for c in chunks[group : group + BARE_IN_FLIGHT]))
        elapsed = time.perf_counter() - started
        return {
            "count": len(payloads),
            "seconds": round(elapsed, 2),
            "per_second": round(len(payloads) / elapsed),
            "cpu_seconds": round(time.process_time() - cpu, 2),
        }
    finally:
        await producer.stop()


def _bodies(template: bytes, tag: str, count: int) -> list[bytes]:
    """``count`` copies of a pre-encoded body, each with its own event ids: the template's
    ids contain a fixed-width placeholder replaced per copy (no JSON encoding per event)."""
    stamp = f"{tag}-{{:07d}}"
    return [template.replace(b"@@@@@@@@@@@@@@@@@@", stamp.format(n).encode()) for n in range(count)]


BATCH_TEMPLATE = orjson.dumps(
    {"events": [make_event(i, "@@@@@@@@@@@@@@@@@@") for i in range(BATCH)]}
)
SINGLE_TEMPLATE = orjson.dumps(make_event(0, "@@@@@@@@@@@@@@@@@@"))


def batch_bodies(tag: str, seconds: float) -> list[bytes]:
    # Enough distinct events (unique ids) for 80k events/s over the phase.
    return _bodies(BATCH_TEMPLATE, tag, max(4, int(80_000 * seconds) // BATCH))


def single_bodies(tag: str, seconds: float) -> list[bytes]:
    return _bodies(SINGLE_TEMPLATE, tag, int(12_000 * seconds))


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


async def main() -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    prefix = f"bench-{run}."
    dbname = f"cxm_bench_{run}"
    admin = create_async_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{dbname}"'))
    db_url = PG_SERVER.rsplit("/", 1)[0] + f"/{dbname}"
    profile = os.environ.get("CXM_BENCH_PROFILE")
    services = {1: Ingest(1, db_url, f"{prefix}w1.", profile)}
    if WORKERS > 1:
        services[WORKERS] = Ingest(WORKERS, db_url, f"{prefix}w{WORKERS}.", None)
    rounds: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    try:
        # One after the other: two services migrating one fresh database at once would race.
        for service in services.values():
            await service.start()
            await service.wait_ready()
        bare_topic = f"{prefix}bare"
        await ensure_topics(KAFKA, [TopicSpec(bare_topic, 6)])
        src = Source("bench", "web")
        now = datetime.now(UTC)
        payloads = []
        for i in range(BARE_EVENTS):
            tp, key = normalise(
                make_event(i, f"bare{run}"),
                source=src,
                received_at=now,
                max_future=timedelta(hours=1),
            )
            payloads.append((key, encode_touchpoint(tp)))
        for service in services.values():  # warm-up: connections, metadata, code paths
            await run_http(
                service, "/v1/events/batch", batch_bodies(f"wu{service.workers}", 0.1), BATCH, 5, 4
            )
        for r in range(ROUNDS):
            result: dict[str, Any] = {"loadavg_1m_before": round(os.getloadavg()[0], 2)}
            for mode in ("send_each", "record_batches"):
                result[f"bare_{mode}"] = await run_bare(payloads, bare_topic, mode)
            for workers, service in services.items():
                tag = f"r{r}w{workers}{run}"
                bodies = batch_bodies(f"b{tag}", BATCHED_SECONDS)
                batched = await run_http(
                    service,
                    "/v1/events/batch",
                    bodies,
                    BATCH,
                    BATCHED_SECONDS,
                    BATCHED_CONNECTIONS,
                )
                del bodies
                singles = single_bodies(f"s{tag}", SINGLE_SECONDS)
                single = await run_http(
                    service, "/v1/events", singles, 1, SINGLE_SECONDS, SINGLE_CONNECTIONS
                )
                bare_each = result["bare_send_each"]["per_second"]
                bare_batches = result["bare_record_batches"]["per_second"]
                batched["ratio_to_bare_send_each"] = round(batched["per_second"] / bare_each, 3)
                batched["ratio_to_bare_record_batches"] = round(
                    batched["per_second"] / bare_batches, 3
                )
                single["ratio_to_bare_send_each"] = round(single["per_second"] / bare_each, 3)
                result[f"workers_{workers}"] = {"batched": batched, "single": single}
            result["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
            rounds.append(result)
            print(json.dumps(result), flush=True)
    finally:
        for service in services.values():
            await service.stop()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        await admin.dispose()

    def med(path: tuple[str, ...]) -> float:
        values = []
        for r in rounds:
            node: Any = r
            for part in path:
                node = node[part]
            values.append(node)
        return median(values)

    summary: dict[str, Any] = {
        "bare_send_each_events_per_second": med(("bare_send_each", "per_second")),
        "bare_record_batches_events_per_second": med(("bare_record_batches", "per_second")),
        "bare_send_each_cpu_us_per_event": round(
            med(("bare_send_each", "cpu_seconds")) / BARE_EVENTS * 1e6, 1
        ),
        "bare_record_batches_cpu_us_per_event": round(
            med(("bare_record_batches", "cpu_seconds")) / BARE_EVENTS * 1e6, 1
        ),
    }
    for workers in services:
        w = f"workers_{workers}"
        summary[w] = {
            "batched_events_per_second": med((w, "batched", "per_second")),
            "batched_ratio_to_bare_send_each": med((w, "batched", "ratio_to_bare_send_each")),
            "batched_ratio_to_bare_record_batches": med(
                (w, "batched", "ratio_to_bare_record_batches")
            ),
            "batched_service_cpu_us_per_event": med((w, "batched", "service_cpu_us_each")),
            "single_requests_per_second": med((w, "single", "per_second")),
            "single_service_cpu_us_per_request": med((w, "single", "service_cpu_us_each")),
        }
    result = {
        "goal": {
            "batched_events_per_second": GOAL_EVENTS_PER_SECOND,
            "batched_ratio_to_bare": GOAL_RATIO,
            "single_requests_per_second": GOAL_REQUESTS_PER_SECOND,
        },
        "median_of_rounds": summary,
        "rounds": rounds,
        "parameters": {
            "rounds": ROUNDS,
            "batch_size": BATCH,
            "batched_seconds": BATCHED_SECONDS,
            "single_seconds": SINGLE_SECONDS,
            "batched_connections": BATCHED_CONNECTIONS,
            "single_connections": SINGLE_CONNECTIONS,
            "bare_events": BARE_EVENTS,
            "bare_batches_in_flight": BARE_IN_FLIGHT,
            "workers_compared": sorted(services),
            "topic_partitions": 6,
            "load_generator": "keep-alive HTTP/1.1 on uvloop streams, pre-encoded bodies",
            "profiled": bool(profile),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "note": os.environ.get(
                "CXM_BENCH_NOTE",
                "Kafka, PostgreSQL, the service(s) and this load generator share the cores",
            ),
        },
    }
    print(json.dumps(summary, indent=2))
    return result


def write_results(result: dict[str, Any]) -> None:
    # Notes kept across runs: the profile summary (from a CXM_BENCH_PROFILE run) and the
    # figures of the code before the optimisation (this bench run on that commit).
    if RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        for kept in ("where_the_time_goes", "before_optimisation"):
            if kept in previous:
                result[kept] = previous[kept]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    write_results(uvloop.run(main()))
