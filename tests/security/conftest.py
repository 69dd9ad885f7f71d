"""Fixtures of the security and resilience tests: the whole-platform fixtures of
``tests/e2e/conftest.py`` (loaded from that file, not copied), and a private Kafka broker and
PostgreSQL cluster that a test may stop and start without touching the shared ones."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cxm_shared.testing.infra import LOCAL_SCRIPTS, REPO_ROOT

_spec = importlib.util.spec_from_file_location(
    "cxm_e2e_fixtures", REPO_ROOT / "tests" / "e2e" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
e2e = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
if not hasattr(e2e, "platform"):
    _spec.loader.exec_module(e2e)

Launched = e2e.Launched
Platform = e2e.Platform


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivateInfra:
    """A Kafka broker and a PostgreSQL cluster of this test run alone, on free ports, with
    their own data directory: stopping them cannot disturb anyone else."""

    home: Path
    kafka_port: int
    pg_port: int
    controller_port: int = 0
    jmx_port: int = 0

    def __post_init__(self) -> None:
        self.controller_port = self.controller_port or _free_port()
        self.jmx_port = self.jmx_port or _free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def postgres_url(self) -> str:
        return f"postgresql+asyncpg://cxm:cxm-dev-password@127.0.0.1:{self.pg_port}/cxm"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXM_")}
        env.update(
            CXM_DATA_DIR=str(self.home),
            CXM_KAFKA_PORT=str(self.kafka_port),
            CXM_KAFKA_CONTROLLER_PORT=str(self.controller_port),
            CXM_KAFKA_JMX_PORT=str(self.jmx_port),
            CXM_KAFKA_HEAP="384m",
            CXM_PG_PORT=str(self.pg_port),
            CXM_PG_DATA=str(self.home / "pg"),
        )
        return env

    def run(self, component: str, action: str) -> None:
        result = subprocess.run(
            ["bash", str(LOCAL_SCRIPTS / f"{component}.sh"), action],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{component}.sh {action} failed:\n{result.stderr[-3000:]}")


@pytest.fixture(scope="package")
def private_infra() -> Iterator[PrivateInfra]:
    """Start a private Kafka (the broker jars of the shared one, linked, not fetched again)
    and a private PostgreSQL; stop both and delete their data afterwards."""
    shared_kafka = Path(os.environ.get("CXM_DATA_DIR", REPO_ROOT / ".data")) / "kafka"
    if not (shared_kafka / "libs").is_dir():
        # `make test` fetched the jars before any test runs; do the same here if needed.
        subprocess.run(["bash", str(LOCAL_SCRIPTS / "kafka.sh"), "install"], check=True)
    home = Path(tempfile.mkdtemp(prefix="cxm-private-infra-"))
    os.chmod(home, 0o755)  # the postgres user (when we are root) must reach the cluster
    (home / "kafka").mkdir()
    for name in ("libs", "agent"):
        (home / "kafka" / name).symlink_to((shared_kafka / name).resolve())
    infra = PrivateInfra(home, _free_port(), _free_port())
    try:
        infra.run("kafka", "start")
        infra.run("postgres", "start")
        yield infra
    finally:
        for component in ("kafka", "postgres"):
            try:
                infra.run(component, "stop")
            except Exception as exc:  # keep stopping the other one
                print(f"could not stop the private {component}: {exc}")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="package")
async def security_platform(
    private_infra: PrivateInfra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Launched]:
    """The four services as processes (the e2e ``launch_platform``, reused as it is) on the
    private Kafka and PostgreSQL, one for every module of this package: starting them costs
    most of these tests' time. Modules that stop a dependency leave it running again."""
    receiver = contextlib.asynccontextmanager(e2e.webhook_receiver.__wrapped__)
    async with receiver() as hooks:
        launch = e2e.launch_platform.__wrapped__(
            private_infra.bootstrap, private_infra.postgres_url, hooks, tmp_path_factory
        )
        async with launch(
            partitions=2,
            # A request waits at most 3 s for a Kafka acknowledgement before its 503.
            CXM_PRODUCE_TIMEOUT_SECONDS="3",
            CXM_RETRY_AFTER_SECONDS="2",
        ) as launched:
            yield launched
