"""The four services as processes, started the way `make up` starts them (``python -m
cxm_<service>``, configured only through ``CXM_*`` variables), each with its own port and data
directory, so one can be SIGKILLed and started again on the same port and data.

A process that exits without being killed by the harness (a crash when its database or
broker went away, say) is noticed by :meth:`Fleet.supervise`, recorded and started again, the
way an orchestrator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cxm_chaos.infra import free_port
from cxm_shared.testing.infra import REPO_ROOT

SERVICES = ("ingest", "profile", "scoring", "alerting")
WRITE_KEY = "dev-write-key"
TOKEN = "dev-api-token"

# Alerts to the teams' SSE streams only: the checker reads the alert store, and webhooks to
# nowhere would only add retries to a machine that is already busy.
ROUTING = """
route:
  receiver: cx
  group_by: [kind, customer_id]
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 4h
  routes:
    - receiver: support
      matchers: ['kind=~"churn_risk_high|churn_risk_rising"']
      continue: true
    - receiver: logistics
      matchers:
        - 'kind=~"negative_feedback|low_csat|high_effort"'
        - 'touchpoint=~"delivery|return|repair"'
    - receiver: support
      matchers: ['kind=~"negative_feedback|detractor|low_csat|high_effort"']
    - receiver: marketing
      matchers: ['kind=~"segment_entered|segment_exited"']
receivers:
  - name: support
    sse: true
  - name: logistics
    sse: true
  - name: cx
    sse: true
  - name: marketing
    sse: true
"""


@dataclass
class ServiceProcess:
    """One process of a service (``label`` e.g. ``scoring-2``), restartable in place."""

    service: str
    label: str
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start #{self.starts} at {time.time():.3f} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"cxm_{self.service}"],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap (no chance to flush, commit or close anything)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.label} ({self.log}) ---\n" + "\n".join(text.splitlines()[-lines:])

    async def ready(self, client: httpx.AsyncClient) -> bool:
        if not self.running():
            return False
        try:
            return (await client.get(f"{self.url}/readyz", timeout=3)).status_code == 200
        except httpx.HTTPError:
            return False


@dataclass
class SelfExit:
    """A process that exited without the harness killing it."""

    label: str
    at: float
    returncode: int | None
    tail: str


@dataclass
class Fleet:
    processes: list[ServiceProcess]
    prefix: str
    # labels the killer is handling right now: the supervisor leaves them alone
    held: set[str] = field(default_factory=set)
    self_exits: list[SelfExit] = field(default_factory=list)

    def of(self, service: str) -> list[ServiceProcess]:
        return [p for p in self.processes if p.service == service]

    def first(self, service: str) -> ServiceProcess:
        return self.of(service)[0]

    def start_all(self) -> None:
        for p in self.processes:
            p.start()

    def stop_all(self) -> None:
        for p in reversed(self.processes):
            if p.running():
                assert p.proc is not None
                p.proc.send_signal(signal.SIGTERM)
        for p in reversed(self.processes):
            p.stop()

    async def wait_ready(
        self, processes: list[ServiceProcess] | None = None, *, timeout: float = 180
    ) -> None:
        pending = list(processes if processes is not None else self.processes)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while pending:
                pending = [p for p in pending if not await p.ready(client)]
                if not pending:
                    return
                if time.monotonic() > deadline:
                    tails = "\n".join(p.tail() for p in pending)
                    raise TimeoutError(f"not ready after {timeout:.0f}s:\n{tails}")
                await asyncio.sleep(0.25)

    async def supervise(self, *, every: float = 0.5) -> None:
        """Restart any process that exited on its own (recorded in ``self_exits``)."""
        while True:
            for p in self.processes:
                if p.label in self.held or p.proc is None or p.running():
                    continue
                self.self_exits.append(
                    SelfExit(p.label, time.time(), p.proc.returncode, p.tail(30))
                )
                p.start()
            await asyncio.sleep(every)


def build_fleet(
    *,
    home: Path,
    bootstrap: str,
    database_url: str,
    workers: dict[str, int],
    partitions: int,
    prefix: str = "chaos.",
    extra_env: dict[str, str] | None = None,
) -> Fleet:
    """The processes (not started): ``workers`` per service, each with a port and data dir."""
    routing = home / "routing.yaml"
    routing.write_text(ROUTING)
    counts = {name: 1 for name in SERVICES} | workers
    ports = {(name, i): free_port() for name in SERVICES for i in range(1, counts[name] + 1)}
    base = {k: v for k, v in os.environ.items() if not k.startswith("CXM_")}
    base.update(
        CXM_MODE="local",
        CXM_LOG_LEVEL="WARNING",
        CXM_KAFKA_BOOTSTRAP=bootstrap,
        CXM_DATABASE_URL=database_url,
        CXM_TOPIC_PREFIX=prefix,
        CXM_TOPIC_PARTITIONS=str(partitions),
        CXM_ROUTING_CONFIG=str(routing),
        CXM_WEBHOOK_SECRETS=json.dumps({}),
        CXM_PROFILE_BASE_URL=f"http://127.0.0.1:{ports['profile', 1]}",
        CXM_PUBLIC_BASE_URL=f"http://127.0.0.1:{ports['alerting', 1]}",
        CXM_DELIVERY_POLL_SECONDS="0.5",
        CXM_BASE_STATS_INTERVAL_S="5",
        # A killed scoring worker's partitions move after 10 s, not faust's default 60 s
        # (the profile service has no such setting).
        CXM_BROKER_SESSION_TIMEOUT_S="10",
        CXM_BROKER_HEARTBEAT_INTERVAL_S="1",
        **{f"CXM_{name.upper()}_PORT": str(ports[name, 1]) for name in SERVICES},
    )
    base.update(extra_env or {})
    processes = []
    for (name, i), port in ports.items():
        label = f"{name}-{i}"
        data = home / f"data-{label}"
        data.mkdir(parents=True, exist_ok=True)
        env = base | {"CXM_DATA_DIR": str(data), f"CXM_{name.upper()}_PORT": str(port)}
        processes.append(ServiceProcess(name, label, port, env, home / f"{label}.log"))
    return Fleet(processes, prefix)
