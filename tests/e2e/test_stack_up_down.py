"""`make up` / `make down` as a newcomer runs them, on private ports and a private data
directory (so it does not disturb the infrastructure the rest of the suite uses): Kafka,
PostgreSQL and the four services come up ready, and `down` leaves no process behind."""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from cxm_shared.testing.infra import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = ("ingest", "profile", "scoring", "alerting")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def stack_env() -> dict[str, str]:
    data_dir = REPO_ROOT / ".data" / f"stack-test-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update(
        CXM_DATA_DIR=str(data_dir),
        CXM_KAFKA_PORT=str(free_port()),
        CXM_KAFKA_CONTROLLER_PORT=str(free_port()),
        CXM_PG_PORT=str(free_port()),
        CXM_KAFKA_JMX_PORT=str(free_port()),
        CXM_KAFKA_HEAP="512m",
        **{f"CXM_{s.upper()}_PORT": str(free_port()) for s in SERVICES},
    )
    yield env
    subprocess.run(
        ["bash", "deploy/local/stack.sh", "down"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        check=False,
    )
    shutil.rmtree(data_dir, ignore_errors=True)
    # the fallback cluster location used when the postgres user cannot enter the checkout
    fallback = (
        Path("/var/tmp") / f"cxm-pg-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]}"
    )
    shutil.rmtree(fallback, ignore_errors=True)
    fallback.with_suffix(".log").unlink(missing_ok=True)


def test_up_brings_everything_to_ready_and_down_leaves_nothing(stack_env: dict[str, str]) -> None:
    up = subprocess.run(
        ["bash", "deploy/local/stack.sh", "up"],
        cwd=REPO_ROOT,
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert up.returncode == 0, up.stderr[-4000:]
    assert "dev-write-key" in up.stdout  # the banner shows URLs and dev credentials

    for service in SERVICES:
        port = stack_env[f"CXM_{service.upper()}_PORT"]
        response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert response.status_code == 200, (service, response.text)
        assert set(response.json()["checks"].values()) == {"ok"}
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert metrics.status_code == 200 and "python_info" in metrics.text

    run_dir = Path(stack_env["CXM_DATA_DIR"]) / "run"
    pids = [int(p.read_text()) for p in run_dir.glob("*.pid")]
    assert len(pids) == 1 + len(SERVICES), sorted(p.name for p in run_dir.glob("*.pid"))
    pg_pid_file = next(Path(stack_env["CXM_DATA_DIR"]).glob("postgres/postmaster.pid"), None)
    if pg_pid_file is not None:
        pids.append(int(pg_pid_file.read_text().split()[0]))
    ports = [int(stack_env[k]) for k in stack_env if k.endswith("_PORT") and k.startswith("CXM_")]

    down = subprocess.run(
        ["bash", "deploy/local/stack.sh", "down"],
        cwd=REPO_ROOT,
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert down.returncode == 0, down.stderr[-4000:]
    # every process stopped on SIGTERM by itself: none needed the SIGKILL fallback
    assert "did not stop" not in down.stderr, down.stderr
    alive = [pid for pid in pids if pid_alive(pid)]
    for pid in alive:  # do not leave them behind even when the assertion fails
        os.kill(pid, signal.SIGKILL)
    assert alive == []
    assert [p for p in ports if port_open(p)] == []
