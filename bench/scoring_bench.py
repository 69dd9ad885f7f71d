"""Scoring worker throughput beside a bare aiokafka ``getmany`` decode-and-count loop.

Same run, same topic, loopback broker: N resolved touchpoints (a realistic mix) are produced
once; then (1) a bare consumer reads them all with ``getmany`` and ``orjson.loads`` each value,
(2) the same plus pydantic validation (what any correct consumer must do), (3) the scoring
worker (faust, memory store, in-process) consumes them and publishes snapshots and signals,
(4) the pure per-event work alone (validate + apply + snapshot + encode, no Kafka), to show
where the time goes. Rates are events per second of this process's CPU time (per core) and
per wall second. Writes bench/results/scoring.json. Bounded: about 30-60 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
from cxm_shared.streaming import worker_ready
from cxm_shared.topics import Topics

N = int(os.environ.get("SCORING_BENCH_EVENTS", "20000"))
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


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    topics = Topics(prefix=f"bench{uuid.uuid4().hex[:8]}.")
    await ensure_topics(BOOTSTRAP, topics.all_specs(partitions=1))
    events = make_events()
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

    bare = await bare_loop(topics.touchpoints_resolved, validate=False)
    bare_validated = await bare_loop(topics.touchpoints_resolved, validate=True)
    with tempfile.TemporaryDirectory() as d:
        scorer = await scorer_run(topics, d)
    pure = pure_run(events)
    result = {
        "benchmark": "scoring worker vs bare aiokafka getmany decode-and-count (same topic/run)",
        "events": N,
        "customers": CUSTOMERS,
        "bare_getmany_orjson": bare,
        "bare_getmany_pydantic": bare_validated,
        "scorer_faust": scorer,
        "scorer_pure_no_kafka": pure,
        "ratio_scorer_to_bare_cpu": round(scorer["per_cpu_s"] / bare["per_cpu_s"], 3),
        "ratio_scorer_to_bare_validated_cpu": round(
            scorer["per_cpu_s"] / bare_validated["per_cpu_s"], 3
        ),
        "goal": {"per_core_events_s": 20000, "ratio_to_bare": 0.5},
        "python": sys.version.split()[0],
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
