"""A private Kafka broker and PostgreSQL cluster for one chaos run.

Both come from the same scripts `make infra` uses (``deploy/local/kafka.sh``,
``postgres.sh``), pointed by environment at free ports and a data directory of the run's own,
so killing them never touches the shared instances other work relies on. The broker reuses
the jars the shared installation already fetched (symlinked) instead of fetching them again.

A "kill" is SIGKILL, as a crash or a power cut: the broker's JVM; PostgreSQL's postmaster and
every backend it started (a backend left attached to the shared memory would stop the new
postmaster from starting). The restart is the script's ``start`` on the same data.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cxm_shared.testing.infra import REPO_ROOT

SCRIPTS = REPO_ROOT / "deploy" / "local"
SHARED_KAFKA_HOME = REPO_ROOT / ".data" / "kafka"
PG_USER = "cxm"
PG_PASSWORD = "cxm-dev-password"
PG_DB = "cxm"


class InfraError(RuntimeError):
    """A private broker or database would not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc; no extra dependency)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def _gone(pid: int) -> bool:
    """Exited *and* reaped: the start scripts (``kill -0``, ``pg_ctl status``) take a zombie
    for a live process, and refuse to start while one holds the pid file."""
    return not Path(f"/proc/{pid}").exists()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout: float, *, pid_file: Path) -> None:
    """Wait until ``pids`` are reaped by whoever is their parent now; if one stays a zombie
    (dead, but nobody reaps it), remove the stale ``pid_file`` as an operator would."""
    deadline = time.monotonic() + timeout
    while not all(_gone(p) for p in pids):
        if time.monotonic() > deadline:
            if any(_alive(p) for p in pids):
                raise InfraError(f"processes {pids} still alive {timeout:.0f}s after SIGKILL")
            pid_file.unlink(missing_ok=True)
            return
        time.sleep(0.05)


@dataclass
class PrivateInfra:
    """One Kafka broker and one PostgreSQL cluster under ``home``."""

    home: Path
    kafka_port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    jmx_port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.pg_port}/{PG_DB}"

    @property
    def pg_data(self) -> Path:
        return self.home / "postgres"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXM_")}
        env.update(
            CXM_DATA_DIR=str(self.home),
            CXM_KAFKA_PORT=str(self.kafka_port),
            CXM_KAFKA_CONTROLLER_PORT=str(self.controller_port),
            CXM_KAFKA_JMX_PORT=str(self.jmx_port),
            CXM_KAFKA_HEAP=os.environ.get("CXM_CHAOS_KAFKA_HEAP", "512m"),
            CXM_PG_PORT=str(self.pg_port),
            CXM_PG_DATA=str(self.pg_data),
        )
        return env

    def _script(self, name: str, action: str) -> None:
        result = subprocess.run(
            ["bash", str(SCRIPTS / f"{name}.sh"), action],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if result.returncode != 0:
            raise InfraError(f"{name}.sh {action} failed:\n{result.stderr[-3000:]}")

    # -- Kafka ---------------------------------------------------------------------------

    def _link_kafka_jars(self) -> None:
        home = self.home / "kafka"
        home.mkdir(parents=True, exist_ok=True)
        for part in ("libs", "agent"):
            source, target = SHARED_KAFKA_HOME / part, home / part
            if source.is_dir() and not target.exists():
                target.symlink_to(source)

    def start_kafka(self) -> None:
        self._link_kafka_jars()
        self._script("kafka", "start")

    def kafka_pid(self) -> int | None:
        pid_file = self.home / "run" / "kafka.pid"
        return int(pid_file.read_text()) if pid_file.exists() else None

    def kill_kafka(self) -> None:
        pid = self.kafka_pid()
        if pid is None or not _alive(pid):
            raise InfraError("the private broker is not running")
        os.kill(pid, signal.SIGKILL)
        _wait_gone([pid], 10, pid_file=self.home / "run" / "kafka.pid")

    def stop_kafka(self) -> None:
        self._script("kafka", "stop")

    # -- PostgreSQL ----------------------------------------------------------------------

    def start_postgres(self) -> None:
        self._script("postgres", "start")

    def postmaster_pid(self) -> int | None:
        pid_file = self.pg_data / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill_postgres(self) -> None:
        pid = self.postmaster_pid()
        if pid is None or not _alive(pid):
            raise InfraError("the private PostgreSQL is not running")
        backends = _children(pid)
        os.kill(pid, signal.SIGKILL)
        for child in backends:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _wait_gone([pid, *backends], 10, pid_file=self.pg_data / "postmaster.pid")

    def stop_postgres(self) -> None:
        self._script("postgres", "stop")

    # -- both ------------------------------------------------------------------------------

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.start_postgres()
        self.start_kafka()

    def stop(self) -> None:
        """Best effort: both are stopped even if one refuses."""
        errors = []
        for stop in (self.stop_kafka, self.stop_postgres):
            try:
                stop()
            except (InfraError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        pid = self.kafka_pid()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        if errors:
            raise InfraError("; ".join(errors))
