"""Fixtures of the security and resilience tests: the whole-platform fixtures of
``tests/e2e/conftest.py`` (loaded from that file, not copied), and a private Kafka broker and
PostgreSQL cluster that a test may stop and start without touching the shared ones."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cxm_chaos.infra import SHARED_KAFKA_HOME, PrivateInfra
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


@pytest.fixture(scope="package")
def private_infra() -> Iterator[PrivateInfra]:
    """Start a private Kafka (the broker jars of the shared one, linked, not fetched again)
    and a private PostgreSQL (``cxm_chaos.infra``, the chaos harness's own); stop both and
    delete their data afterwards."""
    if not (SHARED_KAFKA_HOME / "libs").is_dir():
        # `make test` fetched the jars before any test runs; do the same here if needed.
        subprocess.run(["bash", str(LOCAL_SCRIPTS / "kafka.sh"), "install"], check=True)
    home = Path(tempfile.mkdtemp(prefix="cxm-private-infra-"))
    os.chmod(home, 0o755)  # the postgres user (when we are root) must reach the cluster
    infra = PrivateInfra(home)
    try:
        infra.start()
        yield infra
    finally:
        try:
            infra.stop()
        except Exception as exc:  # the data is deleted anyway
            print(f"could not stop the private infrastructure: {exc}")
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
            private_infra.bootstrap, private_infra.database_url, hooks, tmp_path_factory
        )
        async with launch(
            partitions=2,
            # A request waits at most 3 s for a Kafka acknowledgement before its 503.
            CXM_PRODUCE_TIMEOUT_SECONDS="3",
            CXM_RETRY_AFTER_SECONDS="2",
        ) as launched:
            yield launched
