"""Profile service benchmark (≤ 60 s, loopback only), each figure beside a bare baseline.

1. Resolution throughput: touchpoints/s through the faust agent into PostgreSQL (resolve,
   timeline, publish) beside a bare aiokafka consumer loop reading the same number of
   messages from the same broker.
2. Profile lookup: GET /v1/profiles/lookup (token auth, normalise + HMAC, one SQL round trip
   via SQLAlchemy) beside a raw asyncpg route running the same SQL, both served in-process
   through httpx's ASGI transport: paced at 1,000 requests/s (p50/p99 from the scheduled
   send time, so queueing counts) and closed-loop maximum requests/s.

Writes bench/results/profile.json. Needs the local Kafka and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from cxm_profile.api import create_app
from cxm_profile.config import ProfileSettings
from cxm_profile.identity.identifiers import parse_identifiers
from cxm_profile.profiles.service import PROFILE_BY_KEY
from cxm_shared.events import Touchpoint, encode
from cxm_shared.kafka import ensure_topics, make_consumer, make_producer
from cxm_shared.topics import Topics, TopicSpec

KAFKA = os.environ.get("CXM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
POSTGRES = os.environ.get(
    "CXM_BENCH_POSTGRES", "postgresql+asyncpg://cxm:cxm-dev-password@127.0.0.1:5433/cxm"
)
EVENTS = int(os.environ.get("CXM_BENCH_EVENTS", "1500"))
CUSTOMERS = EVENTS // 3
TOKEN = "bench-token"
OUT = Path(__file__).parent / "results" / "profile.json"


def touchpoints(run: str) -> list[Touchpoint]:
    now = datetime.now(UTC)
    out = []
    for n in range(EVENTS):
        c = n % CUSTOMERS
        step = n // CUSTOMERS
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


async def paced(client: httpx.AsyncClient, paths: list[str], rate: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    interval = 1 / rate
    total = int(rate * seconds)
    start = time.perf_counter()

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        r = await client.get(paths[i % len(paths)], headers={"Authorization": f"Bearer {TOKEN}"})
        if r.status_code != 200:
            errors += 1
        latencies.append(time.perf_counter() - scheduled)

    tasks = []
    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": total,
        "errors": errors,
        "achieved_rps": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
    }


async def closed_loop(client: httpx.AsyncClient, paths: list[str], seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while time.perf_counter() < deadline:
            r = await client.get(
                paths[i % len(paths)], headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert r.status_code == 200, r.text
            done += 1
            i += 16

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(16)))
    return done / (time.perf_counter() - start)


def raw_app(dsn: str) -> FastAPI:
    """The baseline: the same lookup SQL on a bare asyncpg pool, no auth, no ORM."""
    sql = str(PROFILE_BY_KEY).replace(":key", "$1")
    state: dict = {}
    app = FastAPI()

    @app.get("/raw")
    async def raw(key: str) -> dict:
        if "pool" not in state:
            state["pool"] = await asyncpg.create_pool(dsn, min_size=4, max_size=10)
        row = await state["pool"].fetchrow(sql, key)
        return {"customer_id": row["customer_id"], "identifiers": row["identifiers"]}

    app.state.raw = state
    return app


async def main() -> None:
    run = uuid.uuid4().hex[:8]
    topics = Topics(prefix=f"bench{run}.")
    db_name = f"cxm_bench_{run}"
    admin = create_async_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{db_name}"'))
    db_url = make_url(POSTGRES).set(database=db_name).render_as_string(hide_password=False)
    results: dict = {"events": EVENTS, "customers": CUSTOMERS}
    try:
        events = touchpoints(run)
        payloads = [encode(tp) for tp in events]
        bare_topic = f"bench{run}.bare"
        await ensure_topics(KAFKA, [TopicSpec(bare_topic, 2)])
        bare_rate = await bare_consumer_rate(bare_topic, payloads)

        settings = ProfileSettings(
            kafka_bootstrap=KAFKA,
            database_url=db_url,
            topic_prefix=topics.prefix,
            topic_partitions=2,
            api_tokens=TOKEN,
            data_dir=tempfile.mkdtemp(prefix="profile-bench-"),
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            producer = make_producer(KAFKA)
            await producer.start()
            started = time.perf_counter()
            for tp, p in zip(events, payloads, strict=True):
                await producer.send(topics.touchpoints, p, key=tp.event_id.encode())
            await producer.flush()
            await producer.stop()
            deadline = time.monotonic() + 40
            while (n := await processed(db_url)) < EVENTS:
                if time.monotonic() > deadline:
                    sys.exit(f"only {n}/{EVENTS} events processed in time")
                await asyncio.sleep(0.05)
            agent_rate = EVENTS / (time.perf_counter() - started)
            results["resolution"] = {
                "agent_events_per_s": round(agent_rate, 1),
                "bare_consumer_events_per_s": round(bare_rate, 1),
                "ratio": round(agent_rate / bare_rate, 4),
            }

            keys = [
                parse_identifiers(
                    {"email": f"c{c}.{run}@example.org"},
                    rules=settings.rules,
                    secret=settings.secret,
                )
                .accepted[0]
                .key
                for c in range(CUSTOMERS)
            ]
            api_paths = [
                f"/v1/profiles/lookup?type=email&value=c{c}.{run}%40example.org"
                for c in range(CUSTOMERS)
            ]
            raw_paths = [f"/raw?key={k}" for k in keys]
            dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
            baseline = raw_app(dsn)
            api_t = httpx.ASGITransport(app=app)
            raw_t = httpx.ASGITransport(app=baseline)
            async with (
                httpx.AsyncClient(transport=api_t, base_url="http://p") as api,
                httpx.AsyncClient(transport=raw_t, base_url="http://r") as raw,
            ):
                await closed_loop(api, api_paths, 0.5)  # warm-up
                await closed_loop(raw, raw_paths, 0.5)
                api_paced = await paced(api, api_paths, 1000, 4)
                raw_paced = await paced(raw, raw_paths, 1000, 4)
                api_max = await closed_loop(api, api_paths, 3)
                raw_max = await closed_loop(raw, raw_paths, 3)
            await baseline.state.raw["pool"].close()
            results["lookup"] = {
                "api_at_1000_rps": api_paced,
                "raw_asyncpg_at_1000_rps": raw_paced,
                "api_max_rps": round(api_max, 1),
                "raw_asyncpg_max_rps": round(raw_max, 1),
                "max_rps_ratio": round(api_max / raw_max, 4),
                "p99_ratio_raw_over_api": round(raw_paced["p99_ms"] / api_paced["p99_ms"], 4),
                "goal": "api p99 <= 10 ms at 1,000 req/s; api max rps >= 0.7 x raw",
            }
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        await admin.dispose()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
