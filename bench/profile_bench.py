"""Profile service benchmark (loopback only, ≤ 90 s per run), each figure beside a bare
baseline measured in the same run. ``CXM_BENCH_RUNS`` runs (default 3); the JSON keeps every
run and the medians.

1. Resolution throughput: touchpoints/s through the faust agent into PostgreSQL (batched
   resolve, timeline, publish) beside a bare aiokafka consumer loop reading the same number of
   messages. The clock starts once the worker is up and a warm-up event went through (faust
   start-up and the consumer-group join are not counted).
2. Profile lookup and personalisation decision: the service runs under uvicorn (uvloop,
   httptools) in its own process, with a raw asyncpg route (same SQL, no auth, no ORM) mounted
   in the same process as the baseline, while an ingest-like producer feeds it touchpoints (the
   agent resolves them in that process). The customers carry score snapshots (segments), so
   decisions go through rules and an experiment (and log exposures). The load generator is
   `oha` (Rust, built once by deploy/local/oha.sh; `CXM_BENCH_LOADGEN=python` or no cargo: the
   Python one below, which on 2 cores takes as much CPU as the server it measures). It paces
   1,000 requests/s open-loop (latency from the scheduled send time, so queueing counts), then
   measures the closed-loop maximum; the three routes alternately in the same run. The JSON
   records the load average around every measurement: other work on the machine shows there.

Writes bench/results/profile.json. Needs the local Kafka and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from fastapi import FastAPI, Response
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from cxm_profile.api import create_app, keep_session
from cxm_profile.config import ProfileSettings
from cxm_profile.identity.identifiers import parse_identifiers
from cxm_profile.profiles.service import PROFILE_BY_KEY, store_scores
from cxm_shared.events import ScoreSnapshot, Touchpoint, encode
from cxm_shared.kafka import drop_topics, ensure_topics, make_consumer, make_producer
from cxm_shared.topics import Topics, TopicSpec

KAFKA = os.environ.get("CXM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
POSTGRES = os.environ.get(
    "CXM_BENCH_POSTGRES", "postgresql+asyncpg://cxm:cxm-dev-password@127.0.0.1:5433/cxm"
)
EVENTS = int(os.environ.get("CXM_BENCH_EVENTS", "1500"))
# Resolution runs are longer: 1,500 events at thousands of events/s is under a second.
RESOLUTION_EVENTS = int(os.environ.get("CXM_BENCH_RESOLUTION_EVENTS", "3000"))
RUNS = int(os.environ.get("CXM_BENCH_RUNS", "3"))
INGEST_RATE = 200  # touchpoints/s fed to the service while lookups are measured
LOOKUP_RATE = 1000
CUSTOMERS = EVENTS // 3
TOKEN = "bench-token"
OUT = Path(__file__).parent / "results" / "profile.json"
HERE = str(Path(__file__).resolve())
ROOT = Path(__file__).resolve().parent.parent
ROUTES = ("api", "decision", "raw")
# Segments of the bench customers, in turn: an experiment's audience (decisions assign a
# variant and log an exposure), a rule's audience, and nobody in particular (the default).
SEGMENTS = (["rfm:loyal"], ["vip_at_risk"], [])


def touchpoints(run: str, events: int = EVENTS, customers: int = CUSTOMERS) -> list[Touchpoint]:
    now = datetime.now(UTC)
    out = []
    for n in range(events):
        c = n % customers
        step = n // customers
        ids = [
            {"anonymous_id": f"a-{run}-{c}"},
            {"anonymous_id": f"a-{run}-{c}", "email": f"c{c}.{run}@example.org"},
            {"email": f"c{c}.{run}@example.org", "loyalty_id": f"L-{run}-{c}"},
        ][step % 3]
        out.append(
            Touchpoint(
                event_id=f"{run}-{n}",
                type="page_view",
                channel="web",
                occurred_at=now,
                received_at=now,
                source="bench",
                identifiers=ids,
                properties={"n": n},
            )
        )
    return out


async def bare_consumer_rate(topic: str, payloads: list[bytes]) -> float:
    producer = make_producer(KAFKA)
    await producer.start()
    try:
        for p in payloads:
            await producer.send(topic, p)
        await producer.flush()
    finally:
        await producer.stop()
    consumer = make_consumer(KAFKA, topic, group_id=f"bench-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    seen = 0
    started = None
    try:
        while seen < len(payloads):
            batch = await consumer.getmany(timeout_ms=500)
            started = started or time.perf_counter()
            for messages in batch.values():
                for m in messages:
                    json.loads(m.value)
                    seen += 1
            await consumer.commit()
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def processed(db_url: str) -> int:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            return (
                await conn.execute(text("SELECT count(*) FROM profile.processed_events"))
            ).scalar_one()
    finally:
        await engine.dispose()


# -- load generator (its own process): raw HTTP/1.1 over keep-alive connections -----------


async def _request(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes) -> int:
    reader, writer = conn
    writer.write(raw)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) != b"\r\n":
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


def _raw(path: str, auth: bool) -> bytes:
    header = f"Authorization: Bearer {TOKEN}\r\n" if auth else ""
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n{header}\r\n".encode()


async def _paced(port: int, requests: list[bytes], rate: int, seconds: float) -> dict:
    free: asyncio.Queue = asyncio.Queue()
    for _ in range(64):
        free.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    start = time.perf_counter()

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        conn = await free.get()
        try:
            if await _request(conn, requests[i % len(requests)]) != 200:
                errors += 1
        finally:
            free.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)

    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        if (delay := scheduled - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not free.empty():
        free.get_nowait()[1].close()
    latencies.sort()
    return {
        "requests": total,
        "errors": errors,
        "achieved_rps": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
    }


async def _closed(port: int, requests: list[bytes], seconds: float, workers: int = 16) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        conn = await asyncio.open_connection("127.0.0.1", port)
        i = w
        while time.perf_counter() < deadline:
            assert await _request(conn, requests[i % len(requests)]) == 200
            done += 1
            i += workers
        conn[1].close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    return done / (time.perf_counter() - start)


async def loadgen(spec: dict) -> dict:
    port = spec["port"]
    routes = {name: [_raw(p, auth=name != "raw") for p in spec["paths"][name]] for name in ROUTES}
    for name in ROUTES:  # warm-up: connections, prepared statements, caches
        await _closed(port, routes[name], 1.0)
    runs = []
    for _ in range(spec["runs"]):
        run: dict = {}
        for name in ROUTES:
            run[f"{name}_at_{LOOKUP_RATE}_rps"] = await _paced(
                port, routes[name], LOOKUP_RATE, spec["paced_seconds"]
            ) | {"load_average_1m": round(os.getloadavg()[0], 2)}
        for name in ROUTES:
            run[f"{name}_max_rps"] = round(await _closed(port, routes[name], 2.5), 1)
        runs.append(with_ratios(run))
    return {"runs": runs}


def with_ratios(run: dict) -> dict:
    run["max_rps_ratio"] = round(run["api_max_rps"] / run["raw_max_rps"], 4)
    run["decision_max_rps_ratio"] = round(run["decision_max_rps"] / run["raw_max_rps"], 4)
    return run


# -- load generator: oha (its own process, Rust) ----------------------------------------


def find_oha() -> str | None:
    """oha's path (deploy/local/oha.sh builds it once), or None to use the Python loadgen."""
    if os.environ.get("CXM_BENCH_LOADGEN", "oha") != "oha":
        return None
    script = ROOT / "deploy" / "local" / "oha.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"oha unavailable, using the Python load generator: {done.stderr[-300:]}")
        return None
    return done.stdout.strip().splitlines()[-1]


async def oha_run(
    oha: str,
    urls: Path,
    *,
    auth: bool,
    seconds: float,
    rate: int | None,
    connections: int,
    server_pid: int,
) -> dict:
    """One oha run over the URLs in `urls` (picked at random per request)."""
    args = [oha, "--no-tui", "--output-format", "json", "--urls-from-file", "-w"]
    args += ["-z", f"{seconds}s", "-c", str(connections)]
    if rate is not None:  # open loop: latency from each request's scheduled time
        args += ["-q", str(rate), "--latency-correction"]
    if auth:
        args += ["-H", f"Authorization: Bearer {TOKEN}"]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = process_cpu_seconds(server_pid)
    proc = await asyncio.create_subprocess_exec(
        *args, str(urls), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"oha failed: {err.decode()[-500:]}")
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = process_cpu_seconds(server_pid) - server_before
    report = json.loads(out)
    statuses = {int(k): v for k, v in report["statusCodeDistribution"].items()}
    errors = sum(v for k, v in statuses.items() if k != 200)
    errors += sum(report["errorDistribution"].values())
    latency = report["metrics"]["latency_ms"]
    requests = sum(statuses.values()) + sum(report["errorDistribution"].values())
    return {
        "requests": requests,
        "errors": errors,
        "achieved_rps": round(report["metrics"]["requests_per_sec"], 1),
        "p50_ms": round(latency["p50"], 3),
        "p99_ms": round(latency["p99"], 3),
        "loadgen_cpu_s": round(
            cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime,
            3,
        ),
        # The server process's CPU per answered request (its resolver's share of the
        # ingest running meanwhile included): what caps its rate on one core.
        "server_cpu_ms_per_request": round(server_cpu / max(requests, 1) * 1000, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def oha_loadgen(oha: str, spec: dict) -> dict:
    directory = Path(tempfile.mkdtemp(prefix="profile-bench-urls-"))
    files = {}
    for name in ROUTES:
        files[name] = directory / f"{name}.txt"
        base = f"http://127.0.0.1:{spec['port']}"
        files[name].write_text("\n".join(base + p for p in spec["paths"][name]) + "\n")
    for name in ROUTES:  # warm-up: connections, prepared statements, caches
        await oha_run(
            oha,
            files[name],
            auth=name != "raw",
            seconds=1,
            rate=None,
            connections=16,
            server_pid=spec["server_pid"],
        )
    runs = []
    for n in range(spec["runs"]):
        run: dict = {}
        # Each run starts with another route: whatever the previous measurement left behind
        # (the resolver catching up on ingest, a checkpoint) does not always hit the same one.
        order = ROUTES[n % len(ROUTES) :] + ROUTES[: n % len(ROUTES)]
        run["order"] = list(order)
        for name in order:
            await asyncio.sleep(1)
            run[f"{name}_at_{LOOKUP_RATE}_rps"] = await oha_run(
                oha,
                files[name],
                auth=name != "raw",
                seconds=spec["paced_seconds"],
                rate=LOOKUP_RATE,
                connections=64,
                server_pid=spec["server_pid"],
            )
        for name in order:
            await asyncio.sleep(1)
            closed = await oha_run(
                oha,
                files[name],
                auth=name != "raw",
                seconds=2.5,
                rate=None,
                connections=16,
                server_pid=spec["server_pid"],
            )
            run[f"{name}_max_rps"] = closed["achieved_rps"]
            run[f"{name}_max_server_cpu_ms_per_request"] = closed["server_cpu_ms_per_request"]
        runs.append(with_ratios(run))
        print("lookup", json.dumps(run), flush=True)
    return {"runs": runs}


# -- the service under test (its own process) -------------------------------------------


def serve(db_url: str, prefix: str, port: int) -> None:
    import uvicorn

    settings = ProfileSettings(
        kafka_bootstrap=KAFKA,
        database_url=db_url,
        topic_prefix=prefix,
        topic_partitions=2,
        api_tokens=TOKEN,
        data_dir=tempfile.mkdtemp(prefix="profile-bench-"),
    )
    app = create_app(settings)
    add_raw_route(app, db_url.replace("postgresql+asyncpg://", "postgresql://"))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()


def add_raw_route(app: FastAPI, dsn: str) -> None:
    """The baseline: the same lookup SQL on a bare asyncpg pool, no auth, no ORM."""
    sql = str(PROFILE_BY_KEY).replace(":key", "$1")
    state: dict = {}

    @app.get("/raw")
    async def raw(key: str) -> Response:
        if "pool" not in state:
            state["pool"] = await asyncpg.create_pool(
                dsn, min_size=4, max_size=10, reset=keep_session
            )
        row = await state["pool"].fetchrow(sql, key)
        body = json.dumps({"customer_id": row["customer_id"], "identifiers": row["identifiers"]})
        return Response(body, media_type="application/json")


# -- orchestration ------------------------------------------------------------------------


async def wait_processed(db_url: str, target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (n := await processed(db_url)) < target:
        if time.monotonic() > deadline:
            sys.exit(f"only {n}/{target} events processed in time")
        await asyncio.sleep(0.02)


async def resolution_runs(db_url: str, topics: Topics) -> list[dict]:
    settings = ProfileSettings(
        kafka_bootstrap=KAFKA,
        database_url=db_url,
        topic_prefix=topics.prefix,
        topic_partitions=2,
        api_tokens=TOKEN,
        data_dir=tempfile.mkdtemp(prefix="profile-bench-"),
    )
    app = create_app(settings)
    runs = []
    async with app.router.lifespan_context(app):
        producer = make_producer(KAFKA)
        await producer.start()
        try:
            # Worker up, group joined, first event through: the clock starts after this.
            (warm,) = touchpoints(f"warm{uuid.uuid4().hex[:6]}", events=1)
            await producer.send_and_wait(topics.touchpoints, encode(warm), key=b"w")
            await wait_processed(db_url, 1, 60)
            for _ in range(RUNS):
                run = uuid.uuid4().hex[:8]
                events = touchpoints(run, RESOLUTION_EVENTS, customers=RESOLUTION_EVENTS // 3)
                payloads = [encode(tp) for tp in events]
                bare_topic = f"{topics.prefix}bare{run}"
                await ensure_topics(KAFKA, [TopicSpec(bare_topic, 2)])
                bare_rate = await bare_consumer_rate(bare_topic, payloads)
                base = await processed(db_url)
                started = time.perf_counter()
                for tp, p in zip(events, payloads, strict=True):
                    await producer.send(topics.touchpoints, p, key=tp.event_id.encode())
                await producer.flush()
                await wait_processed(db_url, base + len(events), 60)
                rate = len(events) / (time.perf_counter() - started)
                runs.append(
                    {
                        "agent_events_per_s": round(rate, 1),
                        "bare_consumer_events_per_s": round(bare_rate, 1),
                        "ratio": round(rate / bare_rate, 4),
                    }
                )
                print("resolution", runs[-1], flush=True)
        finally:
            await producer.stop()
    return runs


async def ingest_load(topics: Topics, stop: asyncio.Event) -> int:
    """Touchpoints at INGEST_RATE/s, each new event joining or creating customers."""
    producer = make_producer(KAFKA)
    await producer.start()
    sent = 0
    try:
        start = time.perf_counter()
        run = uuid.uuid4().hex[:8]
        while not stop.is_set():
            batch = touchpoints(f"{run}-{sent}", events=20)
            for tp in batch:
                await producer.send(topics.touchpoints, encode(tp), key=tp.event_id.encode())
            sent += len(batch)
            if (delay := start + sent / INGEST_RATE - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = await asyncio.open_connection("127.0.0.1", port)
            status = await _request(conn, _raw("/readyz", auth=False))
            conn[1].close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.3)
    sys.exit("the profile server did not become ready")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_of(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 4)


async def seed_segments(db_url: str) -> int:
    """A score snapshot per bench customer (segments in turn from SEGMENTS), stored as the
    scores agent stores what it reads from cx.scores."""
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            ids = [
                r[0]
                for r in await conn.execute(
                    text(
                        "SELECT customer_id FROM profile.customers WHERE parent_id IS NULL"
                        " ORDER BY customer_id"
                    )
                )
            ]
        now = datetime.now(UTC)
        records: list[tuple[str, ScoreSnapshot | None]] = [
            (c, ScoreSnapshot(customer_id=c, updated_at=now, segments=SEGMENTS[n % len(SEGMENTS)]))
            for n, c in enumerate(ids)
        ]
        await store_scores(engine=engine, records=records)
        return len(ids)
    finally:
        await engine.dispose()


async def lookup_runs(
    db_url: str, topics: Topics, run_customers: list[str], oha: str | None
) -> dict:
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, HERE, "serve", db_url, topics.prefix, str(port)
    )
    try:
        await wait_ready(port)
        secret = ProfileSettings(database_url=db_url).secret
        rules = ProfileSettings(database_url=db_url).rules
        emails = [f"c{c}.{run}@example.org" for run in run_customers for c in range(CUSTOMERS)]
        keys = [
            parse_identifiers({"email": e}, rules=rules, secret=secret).accepted[0].key
            for e in emails
        ]
        quoted = [e.replace("@", "%40") for e in emails]
        spec = {
            "port": port,
            "server_pid": server.pid,
            "runs": RUNS,
            "paced_seconds": 4,
            "paths": {
                "api": [f"/v1/profiles/lookup?type=email&value={e}" for e in quoted],
                "decision": [
                    f"/v1/decisions?type=email&value={e}&placement=home_banner" for e in quoted
                ],
                "raw": [f"/raw?key={k}" for k in keys],
            },
        }
        stop = asyncio.Event()
        ingest = asyncio.create_task(ingest_load(topics, stop))
        if oha is not None:
            result = await oha_loadgen(oha, spec)
        else:
            gen = await asyncio.create_subprocess_exec(
                sys.executable,
                HERE,
                "loadgen",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await gen.communicate(json.dumps(spec).encode())
            result = json.loads(out)
        stop.set()
        ingested = await ingest
        result["ingest_touchpoints_sent_during_lookups"] = ingested
        result["load_generator"] = (
            "oha 1.16.0" if oha else "python asyncio (bench/profile_bench.py)"
        )
        return result
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=30)


async def main() -> None:
    run = uuid.uuid4().hex[:8]
    topics = Topics(prefix=f"bench{run}.")
    db_name = f"cxm_bench_{run}"
    admin = create_async_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    db_url = make_url(POSTGRES).set(database=db_name).render_as_string(hide_password=False)
    results: dict = {
        "events_per_run": EVENTS,
        "resolution_events_per_run": RESOLUTION_EVENTS,
        "customers_per_run": CUSTOMERS,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "note": "2 shared cores: Kafka, PostgreSQL and other helpers' tests/benches ran",
        },
    }
    try:
        res_runs = await resolution_runs(db_url, topics)
        results["resolution"] = {
            "runs": res_runs,
            "median_agent_events_per_s": median_of(res_runs, "agent_events_per_s"),
            "median_bare_consumer_events_per_s": median_of(res_runs, "bare_consumer_events_per_s"),
            "median_ratio": median_of(res_runs, "ratio"),
            "clock": "starts after the worker is up and a warm-up event was resolved",
        }
        # Lookup keys: customers of the resolution runs (their run ids are in processed rows).
        engine = create_async_engine(db_url)
        async with engine.connect() as conn:
            prefixes = [
                r[0]
                for r in await conn.execute(
                    text(
                        "SELECT DISTINCT split_part(event_id, '-', 1) FROM profile.processed_events"
                        " WHERE event_id NOT LIKE 'warm%'"
                    )
                )
            ]
        await engine.dispose()
        results["customers_with_segments"] = await seed_segments(db_url)
        lookups = await lookup_runs(db_url, topics, prefixes, find_oha())
        runs = lookups["runs"]
        medians: dict = {}
        for name in ROUTES:
            paced = [r[f"{name}_at_{LOOKUP_RATE}_rps"] for r in runs]
            for figure in ("p50_ms", "p99_ms", "achieved_rps"):
                medians[f"median_{name}_{figure}"] = statistics.median(p[figure] for p in paced)
            medians[f"median_{name}_max_rps"] = median_of(runs, f"{name}_max_rps")
            cpu = f"{name}_max_server_cpu_ms_per_request"
            if all(cpu in r for r in runs):  # oha runs only
                medians[f"median_{cpu}"] = median_of(runs, cpu)
        results["lookup"] = {
            **lookups,
            **medians,
            "median_max_rps_ratio": median_of(runs, "max_rps_ratio"),
            "median_decision_max_rps_ratio": median_of(runs, "decision_max_rps_ratio"),
            "setup": "uvicorn+uvloop+httptools server process (raw route in the same process);"
            f" loadgen in its own process; {INGEST_RATE} touchpoints/s ingested meanwhile;"
            " api = /v1/profiles/lookup, decision = /v1/decisions (home_banner), raw = the"
            " lookup SQL on a bare asyncpg pool",
            "goal": "api and decision p99 <= 10 ms at 1,000 req/s while ingest runs;"
            " api max rps >= 0.7 x raw",
        }
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        await admin.dispose()
        await drop_topics(KAFKA, prefix=topics.prefix)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    # Keep every earlier run: the previous file's latest run joins its history.
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    history = previous.pop("history", [])
    if previous:
        label = previous.pop("label", "first build (commit d02657d): single-event agent")
        history.append({"label": label, **previous})
    results["label"] = os.environ.get(
        "CXM_BENCH_LABEL", "set-based batch resolution on raw asyncpg, asyncpg lookup path"
    )
    results["history"] = history
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1:2] == ["loadgen"]:
        print(json.dumps(asyncio.run(loadgen(json.loads(sys.stdin.read())))))
    else:
        asyncio.run(main())
