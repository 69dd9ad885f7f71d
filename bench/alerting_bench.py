"""Alerting benchmark: signal on Kafka -> signed webhook received, p50/p99 at a steady rate,
beside a bare consume -> HTTP POST loop measured in the same run (goal: p99 <= 2 x bare).

Both loops run in their own process (the alerting service as ``python -m cxm_alerting``, the
bare loop as this script with ``--bare``), so neither shares an event loop with the load
generator and the receiver, which live in this process and stamp both ends with one clock.

The machine is shared and noisy, so the comparison is made round by round: each round measures
one bare segment and one service segment back to back, in alternating order (bare first in
even rounds, service first in odd ones) so neither loop always gets the quieter half; each
segment has RATE x SEGMENT samples (500 by default). The verdict is the median of the
per-round p99 ratios, reported with their spread (min, quartiles, max) and the 1-minute load
average around each segment; pooled percentiles over all rounds are kept beside it. A round in
which either loop fell behind the offered rate (more than BACKLOG_LIMIT of work still queued
when the generator stopped: it did not get the CPU, and measures its queue) is marked
``saturated``, and the verdict is also given over the other rounds. The bare loop runs on the
event loop the service gets from uvicorn (uvloop when installed). Runs
against the local Kafka and PostgreSQL (a throw-away database and private topics, both dropped
afterwards); loopback only; about 3 minutes. Writes bench/results/alerting.json, only when
every segment received every message. ``CXM_BENCH_ROUNDS`` / ``CXM_BENCH_SEGMENT_SECONDS``
shorten it for a quick look (``CXM_BENCH_RESULTS`` writes elsewhere).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal as signals
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
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from cxm_shared.events import Signal, encode
from cxm_shared.kafka import drop_topics, ensure_topics, make_consumer, make_producer
from cxm_shared.settings import DEV_DATABASE_URL
from cxm_shared.topics import Topics, TopicSpec

RATE = 50  # signals per second
DURATION = float(os.environ.get("CXM_BENCH_SEGMENT_SECONDS", "10"))  # seconds per segment
ROUNDS = int(os.environ.get("CXM_BENCH_ROUNDS", "7"))
IDLE_PROBE_SECONDS = 4.0
BACKLOG_LIMIT = 1.0  # seconds of queued work at the end of a segment: the loop fell behind
MAX_PREVIOUS_RUNS = 10
BOOTSTRAP = os.environ.get("CXM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
SERVER_URL = os.environ.get("CXM_BENCH_DATABASE_URL", DEV_DATABASE_URL)
RESULTS = Path(
    os.environ.get("CXM_BENCH_RESULTS") or Path(__file__).parent / "results" / "alerting.json"
)
SECRET = "whsec_" + "YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Receiver:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = {"service": [], "bare": []}
        self.last_received: dict[str, float] = {"service": 0.0, "bare": 0.0}
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = orjson.loads(await request.read())
            now = time.time()
            if request.path == "/bare":
                self.latencies["bare"].append(now - body["sent_ts"])
                self.last_received["bare"] = now
            else:
                self.latencies["service"].append(now - body["data"]["evidence"][-1]["sent_ts"])
                self.last_received["service"] = now
            return web.Response(status=200)

        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}"

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


async def bare_worker(topic: str, group: str, url: str) -> None:
    """The baseline process: consume a message, POST it, commit; no routing, storage or
    signing. Runs until killed."""
    consumer = make_consumer(BOOTSTRAP, topic, group_id=group)
    await consumer.start()
    async with httpx.AsyncClient() as client:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for tp, records in batches.items():
                for record in records:
                    await client.post(url, content=record.value)
                    await consumer.commit({tp: record.offset + 1})


async def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def service_command() -> list[str]:
    """``CXM_BENCH_PROFILE=path`` runs the service under pyinstrument (text report at path),
    or under cProfile when the path ends in ``.prof`` (CPU time per function)."""
    profile = os.environ.get("CXM_BENCH_PROFILE")
    if profile and profile.endswith(".prof"):
        return [sys.executable, "-m", "cProfile", "-o", profile]
    if profile:
        return [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", profile]
    return [sys.executable]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def previous_runs() -> list[dict[str, object]]:
    """Earlier runs kept beside the new one (without their own history), newest first."""
    try:
        old = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return []
    history = old.pop("previous_runs", [])
    return [old, *history][:MAX_PREVIOUS_RUNS]


def write_results(result: dict[str, object]) -> None:
    result["previous_runs"] = previous_runs()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


def summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p99_ms": round(pct(values, 0.99) * 1000, 2),
    }


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    quartiles = (
        statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
    )
    return {
        "min": round(ordered[0], 2),
        "q1": round(quartiles[0], 2),
        "median": round(statistics.median(ordered), 2),
        "q3": round(quartiles[2], 2),
        "max": round(ordered[-1], 2),
    }


async def measure_segment(
    loop: str, topic: str, make: object, receiver: Receiver, pid: int
) -> dict[str, float]:
    """One loop at the steady rate: latencies of every message, CPU of the loop's process."""
    expected = int(RATE * DURATION)
    receiver.latencies[loop] = []
    load = os.getloadavg()[0]
    cpu_before = cpu_seconds(pid)
    await produce_steady(topic, make)
    produced_at = time.time()
    await wait_count(receiver.latencies[loop], expected, 30)
    cpu = cpu_seconds(pid) - cpu_before
    result = summary(receiver.latencies[loop])
    # CPU per message does not depend on what else the machine runs.
    result["cpu_ms_per_message"] = round(cpu * 1000 / expected, 2)
    result["loadavg_1m_before"] = round(load, 2)
    # Work still queued when the generator stopped: more than BACKLOG_LIMIT means the loop
    # did not get the CPU to keep up with the offered rate, and its latencies are queueing.
    result["backlog_s"] = round(max(receiver.last_received[loop] - produced_at, 0.0), 2)
    return result


async def measure_round(
    index: int,
    topics: Topics,
    receiver: Receiver,
    bare_topic: str,
    pids: dict[str, int],
    pooled: dict[str, list[float]],
) -> dict[str, object]:
    def make_bare(i: int) -> tuple[bytes, bytes]:
        return f"c{index}_{i}".encode(), orjson.dumps({"sent_ts": time.time(), "i": i})

    def make_signal(i: int) -> tuple[bytes, bytes]:
        signal = Signal(
            signal_id=f"bench:{index}:{i}",
            kind="detractor",
            customer_id=f"c{index}_{i}",
            occurred_at=datetime.now(UTC),
            evidence={"sent_ts": time.time()},
        )
        return signal.customer_id.encode(), encode(signal)

    segments = {
        "bare": (bare_topic, make_bare),
        "service": (topics.signals, make_signal),
    }
    order = ["bare", "service"] if index % 2 == 0 else ["service", "bare"]
    measured: dict[str, dict[str, float]] = {}
    for loop in order:
        topic, make = segments[loop]
        measured[loop] = await measure_segment(loop, topic, make, receiver, pids[loop])
        pooled[loop].extend(receiver.latencies[loop])
    bare, service = measured["bare"], measured["service"]
    return {
        "round": index,
        "order": order,
        "saturated": any(m["backlog_s"] > BACKLOG_LIMIT for m in measured.values()),
        "service": service,
        "bare_consume_post": bare,
        "p50_ratio": round(service["p50_ms"] / bare["p50_ms"], 2),
        "p99_ratio": round(service["p99_ms"] / bare["p99_ms"], 2),
    }


async def main() -> int:
    topics = Topics(prefix=f"bench{uuid.uuid4().hex[:8]}.")
    bare_topic = topics.name("bench.bare")
    await ensure_topics(BOOTSTRAP, [*topics.all_specs(partitions=2), TopicSpec(bare_topic, 2)])
    name = f"cxm_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    receiver = Receiver()
    await receiver.start()
    processes: list[asyncio.subprocess.Process] = []
    rounds: list[dict[str, object]] = []
    pooled: dict[str, list[float]] = {"service": [], "bare": []}
    idle_cpu_ms_per_second = 0.0
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        routing = Path(tmp) / "routing.yaml"
        routing.write_text(
            "route:\n  receiver: support\n  group_wait: 0s\nreceivers:\n  - name: support\n"
            f"    webhook_configs:\n      - url: {receiver.base_url}/hook\n"
            "        secret_ref: BENCH\n"
        )
        port = free_port()
        env = dict(
            os.environ,
            CXM_KAFKA_BOOTSTRAP=BOOTSTRAP,
            CXM_DATABASE_URL=database_url,
            CXM_TOPIC_PREFIX=topics.prefix,
            CXM_TOPIC_PARTITIONS="2",
            CXM_ALERTING_PORT=str(port),
            CXM_ROUTING_CONFIG=str(routing),
            CXM_WEBHOOK_SECRETS=json.dumps({"BENCH": SECRET}),
            CXM_LOG_LEVEL="WARNING",
        )
        try:
            processes.append(
                await asyncio.create_subprocess_exec(
                    *service_command(), "-m", "cxm_alerting", env=env
                )
            )
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--bare",
                    bare_topic,
                    f"{topics.prefix}bare",
                    f"{receiver.base_url}/bare",
                )
            )
            await wait_http(f"http://127.0.0.1:{port}/readyz", 60)
            await asyncio.sleep(4)  # group joins and connection pools warm up
            # The service's own background work (polls, heartbeats) while no signal flows.
            before = cpu_seconds(processes[0].pid)
            await asyncio.sleep(IDLE_PROBE_SECONDS)
            idle_cpu_ms_per_second = (
                (cpu_seconds(processes[0].pid) - before) * 1000 / IDLE_PROBE_SECONDS
            )
            for index in range(ROUNDS):
                pids = {"service": processes[0].pid, "bare": processes[1].pid}
                rounds.append(
                    await measure_round(index, topics, receiver, bare_topic, pids, pooled)
                )
                print(json.dumps(rounds[-1]), flush=True)
        finally:
            for process in processes:
                # SIGINT: uvicorn shuts down cleanly and a profiler gets to write its report.
                process.send_signal(signals.SIGINT)
            for process in processes:
                try:
                    await asyncio.wait_for(process.wait(), 20)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            await receiver.stop()
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await admin.dispose()
            await drop_topics(BOOTSTRAP, prefix=topics.prefix)
    load_end = os.getloadavg()

    expected = int(RATE * DURATION)
    p50_ratios = [float(r["p50_ratio"]) for r in rounds]  # type: ignore[arg-type]
    p99_ratios = [float(r["p99_ratio"]) for r in rounds]  # type: ignore[arg-type]
    calm = [float(r["p99_ratio"]) for r in rounds if not r["saturated"]]  # type: ignore[arg-type]
    pooled_service, pooled_bare = summary(pooled["service"]), summary(pooled["bare"])
    result = {
        "benchmark": "signal on Kafka -> signed webhook received",
        # e.g. which code was measured (CXM_BENCH_LABEL="before: 30575a1")
        "label": os.environ.get("CXM_BENCH_LABEL", "working tree"),
        "rate_per_second": RATE,
        "segment_seconds": DURATION,
        "expected_per_segment": expected,
        "setup": "service and bare loop each in its own process; generator and receiver in "
        "the bench process; each round = one bare and one service segment back to back, "
        "order alternating per round; verdict = median of the per-round ratios",
        "event_loop": f"{event_loop_name()} in both processes",
        "machine": f"{os.cpu_count()} cores shared with other sessions' tests and benchmarks",
        "loadavg_at_start": [round(x, 2) for x in load_start],
        "loadavg_at_end": [round(x, 2) for x in load_end],
        "service_idle_cpu_ms_per_second": round(idle_cpu_ms_per_second, 2),
        "rounds": rounds,
        "median_p50_ratio": round(statistics.median(p50_ratios), 2),
        "median_p99_ratio": round(statistics.median(p99_ratios), 2),
        "p50_ratio_spread": spread(p50_ratios),
        "p99_ratio_spread": spread(p99_ratios),
        "rounds_meeting_goal": sum(r <= 2 for r in p99_ratios),
        # Rounds in which neither loop fell behind the offered rate (a CPU-starved loop
        # measures its queue, not its latency): the verdict over them, when there are any.
        "unsaturated_rounds": len(calm),
        "median_p99_ratio_unsaturated": round(statistics.median(calm), 2) if calm else None,
        "p99_ratio_spread_unsaturated": spread(calm) if calm else None,
        "pooled": {
            "service": pooled_service,
            "bare_consume_post": pooled_bare,
            "p50_ratio": round(pooled_service["p50_ms"] / pooled_bare["p50_ms"], 2),
            "p99_ratio": round(pooled_service["p99_ms"] / pooled_bare["p99_ms"], 2),
        },
        "goal": "median p99_ratio <= 2",
        "measured_at": datetime.now(UTC).isoformat(),
    }
    complete = len(rounds) == ROUNDS and all(
        r["service"]["count"] == expected and r["bare_consume_post"]["count"] == expected  # type: ignore[index]
        for r in rounds
    )
    if not complete or os.environ.get("CXM_BENCH_PROFILE"):
        # A partial or profiled run would misstate the comparison: keep the recorded results.
        print(json.dumps(result, indent=2))
        print(f"incomplete or profiled run: {RESULTS} left unchanged", file=sys.stderr)
        return 0 if complete else 1
    write_results(result)
    print(json.dumps(result, indent=2))
    return 0


def run_bare(topic: str, group: str, url: str) -> None:
    """The bare loop on the event loop the service gets: uvicorn's loop="auto" picks uvloop
    when it is installed, so the baseline does too (otherwise the service would be compared
    with a slower loop than its own)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(bare_worker(topic, group, url))
    else:
        uvloop.run(bare_worker(topic, group, url))


def event_loop_name() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    return f"uvloop {uvloop.__version__}"


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--bare":
        run_bare(*sys.argv[2:5])
    else:
        sys.exit(asyncio.run(main()))
