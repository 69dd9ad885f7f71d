"""``python -m cxm_ingest`` with several worker processes: serves, then stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid

import httpx
import pytest

from cxm_ingest.config import hash_write_key
from cxm_shared.topics import Topics

pytestmark = pytest.mark.integration
KEY = "test-workers-key"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_two_workers_serve_and_stop_on_sigterm(kafka_bootstrap, scratch_database) -> None:
    port = _free_port()
    topics = Topics(prefix=f"w{uuid.uuid4().hex[:10]}.")
    env = {
        **os.environ,
        "CXM_INGEST_WORKERS": "2",
        "CXM_INGEST_PORT": str(port),
        "CXM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CXM_DATABASE_URL": scratch_database,
        "CXM_TOPIC_PREFIX": topics.prefix,
        "CXM_WRITE_KEYS": f"web-site:web:{hash_write_key(KEY)}",
        "CXM_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "cxm_ingest", env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.returncode is None, "ingest exited during start-up"
                assert time.monotonic() < deadline, "ingest never became ready"
                await asyncio.sleep(0.2)
            ids = [f"w-{uuid.uuid4().hex}" for _ in range(8)]
            for event_id in ids:
                r = await client.post(
                    "/v1/events",
                    json={
                        "event_id": event_id,
                        "type": "page_view",
                        "occurred_at": "2026-03-01T09:30:00+09:00",
                        "identifiers": {"cookie_id": event_id},
                    },
                    auth=httpx.BasicAuth(KEY, ""),
                )
                assert r.status_code == 200, r.text
                assert r.json()["status"] == "accepted"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 40) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    with socket.socket() as s:  # no worker left holding the port
        s.bind(("127.0.0.1", port))
