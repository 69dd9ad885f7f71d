"""kill -9 of the alerting service at random points while alerts flow: no alert is lost, and
a duplicate delivery carries the same webhook-id."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal as signals
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest

from cxm_alerting.routing.alert_ids import alert_id, window_start

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_ALERTS = 60


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_kill_9_loses_no_alert(
    kafka_bootstrap,
    database_url,
    topics,
    tmp_path,
    webhook_receiver,
    webhook_secret,
    send_signals,
    signal_factory,
    waiter,
):
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        "route:\n  receiver: support\nreceivers:\n  - name: support\n    sse: true\n"
        f"    webhook_configs:\n      - url: {webhook_receiver.base_url}/hook\n"
        "        secret_ref: TEST_SECRET\n"
    )
    port = _free_port()
    env = dict(
        os.environ,
        CXM_KAFKA_BOOTSTRAP=kafka_bootstrap,
        CXM_DATABASE_URL=database_url,
        CXM_TOPIC_PREFIX=topics.prefix,
        CXM_TOPIC_PARTITIONS="2",
        CXM_ALERTING_PORT=str(port),
        CXM_ROUTING_CONFIG=str(routing),
        CXM_WEBHOOK_SECRETS=json.dumps({"TEST_SECRET": webhook_secret}),
        CXM_API_TOKENS="test-token",
        CXM_DELIVERY_TIMEOUT_SECONDS="0.5",
        CXM_DELIVERY_POLL_SECONDS="0.1",
        CXM_RETRY_BASE_SECONDS="0.05",
        CXM_LOG_LEVEL="WARNING",
    )
    rng = random.Random(7)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "cxm_alerting"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def healthy() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    batch = [signal_factory("detractor", f"cus_k{i}") for i in range(N_ALERTS)]
    expected = {
        alert_id(
            kind=s.kind,
            customer_id=s.customer_id,
            window_start=window_start(at=s.occurred_at, window=timedelta(days=1)),
        )
        for s in batch
    }

    async def produce() -> None:
        for signal in batch:
            await send_signals(signal)
            await asyncio.sleep(0.03)

    producer = asyncio.create_task(produce())
    process = start()
    kills = 0
    try:
        for _ in range(3):
            await waiter(healthy, timeout=60, what="service up")
            await asyncio.sleep(rng.uniform(0.2, 1.2))
            process.send_signal(signals.SIGKILL)
            process.wait(timeout=10)
            kills += 1
            process = start()
        await producer
        await waiter(healthy, timeout=60, what="service up")
        received = lambda: {r.headers["webhook-id"] for r in webhook_receiver.requests}  # noqa: E731
        await waiter(lambda: received() >= expected, timeout=90, what="every alert delivered")
    finally:
        process.send_signal(signals.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        producer.cancel()

    assert kills == 3
    assert {r.headers["webhook-id"] for r in webhook_receiver.requests} == expected
    for request in webhook_receiver.requests:
        assert request.verified
        # A redelivery after a crash is the same message: same webhook-id as its alert id.
        assert request.headers["webhook-id"] == request.body["data"]["alert_id"]
