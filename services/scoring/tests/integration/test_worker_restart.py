"""kill -9 of the worker mid-stream, then a restart: every customer's state equals a
from-scratch recomputation of their events (nothing lost, nothing counted twice)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cxm_scoring.experience.model_config import DEFAULT_BGNBD, load_segment_rules
from cxm_scoring.experience.models import ExperienceState
from cxm_scoring.experience.service import ScoringModel, apply_touchpoint, score_snapshot
from cxm_shared.events import ResolvedTouchpoint, ScoreSnapshot, decode
from cxm_shared.topics import Topics

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CUSTOMERS = 12
EVENTS = 600
COMMENTS = ("Terrible wait, nobody answered", "Lovely staff and fast delivery", "ok", "最悪の対応")


def build_events(seed: int = 7) -> list[ResolvedTouchpoint]:
    rng = random.Random(seed)
    events = []
    for i in range(EVENTS):
        customer = f"k9-{rng.randrange(CUSTOMERS)}"
        kind = rng.choice(["survey_response", "purchase", "feedback", "support_contact", "page"])
        props: dict = {}
        if kind == "survey_response":
            props = {"nps": rng.randint(0, 10), "csat": rng.randint(1, 5), "ces": rng.randint(1, 5)}
        elif kind == "purchase":
            props = {
                "amount": round(rng.uniform(5, 300), 2),
                "items": [{"category": rng.choice("abc"), "quantity": rng.randint(1, 3)}],
            }
        elif kind in ("feedback", "support_contact"):
            props = {"comment": rng.choice(COMMENTS), "reason": rng.choice(["late", "refund"])}
        else:
            kind = "page_view"
        at = T0 + timedelta(hours=i * 3)
        events.append(
            ResolvedTouchpoint(
                event_id=f"ev-{i}",
                type=kind,
                channel="web",
                touchpoint="home",
                occurred_at=at,
                received_at=at,
                source="test",
                identifiers={"user_id": "u"},
                properties=props,
                customer_id=customer,
            )
        )
    return events


def scored(records) -> int:
    """Events applied over all customers, from each customer's latest snapshot."""
    last = {}
    for k, v in records:
        last[k] = v
    return sum(decode(ScoreSnapshot, v).events_applied for v in last.values() if v is not None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The worker's own entry point, run once a line arrives on stdin. Imports and the sentiment
# analysers (most of a cold start on this machine) are loaded before that, so both workers
# can be spawned at the start of the test; the restarted one still starts its faust app,
# recovers its table from the changelog and joins the group only after the kill.
GATED_MAIN = (
    "import sys; import cxm_scoring.api; from cxm_scoring.sentiment import warm_up; "
    "warm_up(); sys.stdin.readline(); from cxm_scoring.__main__ import main; main()"
)


def spawn_worker(settings, port: int, log: Path, store: str) -> subprocess.Popen:
    """A worker process, loaded and waiting for ``go(proc)`` to start serving."""
    env = {
        **os.environ,
        "CXM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CXM_TOPIC_PREFIX": settings.topic_prefix,
        "CXM_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "CXM_SCORING_PORT": str(port),
        "CXM_SCORING_TABLE_STORE": store,
        "CXM_DATA_DIR": settings.data_dir,
        "CXM_LOG_LEVEL": "WARNING",
        # The restarted worker gets the killed one's partitions once its session expires:
        # 6 s (the broker's minimum) instead of the production 60 s.
        "CXM_BROKER_SESSION_TIMEOUT_S": "6",
        "CXM_BROKER_HEARTBEAT_INTERVAL_S": "1",
    }
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-c", GATED_MAIN],
            env=env,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def go(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()


async def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            assert proc.poll() is None, "worker exited during start-up"
            assert time.monotonic() < deadline, "worker not ready in time"
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.3)


# memory: the restarted worker rebuilds the table from the changelog alone; rocksdb (the
# production default, rocksdict): it reopens the store the killed process left on disk (same
# data directory, written up to some point before the kill) and catches up from the changelog.
@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_kill_9_mid_stream_then_restart_equals_recomputation(
    scoring_settings, publish, read_until, topics: Topics, tmp_path: Path, store: str
) -> None:
    events = build_events()
    log = tmp_path / "worker.log"
    port, restart_port = free_port(), free_port()
    proc = first = spawn_worker(scoring_settings, port, log, store)
    restarted = spawn_worker(scoring_settings, restart_port, log, store)
    try:
        go(proc)
        await wait_ready(port, proc)

        async def publish_all() -> None:
            for e in events:
                await publish(topics.touchpoints_resolved, e.customer_id, e)
                await asyncio.sleep(0.002)  # a stream, not one burst: the kill lands inside it

        publisher = asyncio.create_task(publish_all())
        # Kill once a third of the stream is scored, while the rest is still being published.
        await read_until(topics.scores, lambda r: scored(r) >= EVENTS // 3, timeout=90)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert not publisher.done(), "the stream ended before the kill: not mid-stream"
        await publisher
        assert scored(await read_until(topics.scores, lambda r: True)) < EVENTS

        proc = restarted
        go(proc)
        await wait_ready(restart_port, proc)

        model = ScoringModel(bgnbd=DEFAULT_BGNBD, rules=load_segment_rules(None))
        expected: dict[str, ExperienceState] = {}
        for e in events:
            state = expected.setdefault(e.customer_id, ExperienceState(customer_id=e.customer_id))
            apply_touchpoint(state, event=e, model=model)
        wanted = {c: s.events_applied for c, s in expected.items()}

        def caught_up(records) -> bool:
            last = {}
            for k, v in records:
                last[k.decode()] = v
            return all(
                c in last and decode(ScoreSnapshot, last[c]).events_applied >= n
                for c, n in wanted.items()
            )

        records = await read_until(topics.scores, caught_up, timeout=120)
        last = {k.decode(): decode(ScoreSnapshot, v) for k, v in records}
        for customer, state in expected.items():
            want = ScoreSnapshot.model_validate(score_snapshot(state, model=model))
            assert last[customer] == want, customer
    finally:
        for p in (first, restarted):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            if p.stdin is not None:
                p.stdin.close()
