"""The whole platform for end-to-end tests: the four services started the way `make up`
starts them (``python -m cxm_<service>``, configured only through ``CXM_*`` environment
variables) on free loopback ports, against the shared Kafka and PostgreSQL, with a private
topic prefix, a fresh database and a private data directory per test module. Alerting's
routing is a YAML file pointing the teams' webhooks at a local receiver that checks every
Standard Webhooks signature with the reference implementation (not the service's own code).

Everything started here is stopped here (SIGTERM, then SIGKILL after 30 s), and the module's
topics and database are dropped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from cxm_shared.kafka import drop_topics
from cxm_shared.testing.infra import REPO_ROOT, fresh_database
from cxm_shared.testing.polling import wait_until

SERVICES = ("ingest", "profile", "scoring", "alerting")
WRITE_KEY = "dev-write-key"
TOKEN = "dev-api-token"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"e2e-webhook-secret-0123456789abcdef").decode()
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- webhook receiver ---------------------------------------------------------------------------


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    verified: bool


@dataclass
class WebhookReceiver:
    base_url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)

    def at(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]


@pytest.fixture(scope="module")
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    state = WebhookReceiver()
    verifier = Webhook(WEBHOOK_SECRET)

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            verifier.verify(raw, dict(request.headers))
            verified = True
        except WebhookVerificationError:
            verified = False
        state.deliveries.append(
            Delivery(request.path, dict(request.headers), json.loads(raw), verified)
        )
        return web.Response(status=200 if verified else 401)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    state.base_url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


def routing_yaml(hooks: str) -> str:
    """The shipped default routing tree, with webhooks for support, logistics and cx."""
    return f"""
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
    ack_sla: 15m
    escalate_to: cx
    webhook_configs:
      - url: {hooks}/support
        secret_ref: E2E_WEBHOOK_SECRET
  - name: logistics
    sse: true
    webhook_configs:
      - url: {hooks}/logistics
        secret_ref: E2E_WEBHOOK_SECRET
  - name: cx
    sse: true
    webhook_configs:
      - url: {hooks}/cx
        secret_ref: E2E_WEBHOOK_SECRET
  - name: marketing
    sse: true
inhibit_rules:
  - source_matchers: ['kind="churn_risk_high"', 'severity="critical"']
    target_matchers: ['kind="negative_feedback"', 'severity="warning"']
    equal: [customer_id]
"""


# -- the platform -------------------------------------------------------------------------------


@dataclass
class _Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text_ = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text_.splitlines()[-lines:])


@dataclass
class Platform:
    urls: dict[str, str]
    receiver: WebhookReceiver
    prefix: str
    ingest: httpx.AsyncClient
    api: dict[str, httpx.AsyncClient]  # profile / alerting, with the API token
    processes: list[_Process] = field(default_factory=list)

    async def until(self, check: Callable[[], Awaitable[Any]], *, timeout: float, what: str) -> Any:
        """``wait_until``, with the services' last log lines when it times out."""
        try:
            return await wait_until(check, timeout=timeout, what=what)
        except AssertionError as exc:
            tails = "\n".join(p.tail(15) for p in self.processes)
            raise AssertionError(f"{exc}\n{tails}") from None

    async def post(self, *events: dict[str, Any]) -> None:
        response = await self.ingest.post("/v1/events/batch", json={"events": list(events)})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == len(events), response.text

    async def lookup(self, type_: str, value: str) -> httpx.Response:
        return await self.api["profile"].get(
            "/v1/profiles/lookup", params={"type": type_, "value": value}
        )

    async def profile_when(
        self, type_: str, value: str, ready: Callable[[dict[str, Any]], bool], *, what: str
    ) -> dict[str, Any]:
        """The profile holding an identifier, once ``ready(profile)`` holds."""

        async def check() -> dict[str, Any] | None:
            response = await self.lookup(type_, value)
            if response.status_code != 200:
                return None
            profile = response.json()
            return profile if ready(profile) else None

        return await self.until(check, timeout=60, what=what)

    async def alerts(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.api["alerting"].get("/v1/alerts", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        return response.json()

    async def stream(
        self, team: str, *, until: Callable[[list[dict[str, Any]]], bool], timeout: float
    ) -> list[dict[str, Any]]:
        """Read ``team``'s SSE stream from its start until ``until(events)`` holds or
        ``timeout`` passes; returns the events read (``id``, ``event``, ``data``)."""
        events: list[dict[str, Any]] = []

        async def read() -> None:
            current: dict[str, Any] = {}
            async with self.api["alerting"].stream(
                "GET", f"/v1/teams/{team}/stream", timeout=httpx.Timeout(5, read=timeout + 5)
            ) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("id:"):
                        current["id"] = line[3:].strip()
                    elif line.startswith("event:"):
                        current["event"] = line[6:].strip()
                    elif line.startswith("data:"):
                        current["data"] = json.loads(line[5:].strip())
                    elif line == "" and "data" in current:
                        events.append(current)
                        current = {}
                        if until(events):
                            return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(), timeout)
        return events


def _spawn(name: str, env: dict[str, str], log: Path) -> _Process:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"cxm_{name}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return _Process(name, proc, log)


def _stop(processes: list[_Process]) -> None:
    for p in reversed(processes):
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    for p in reversed(processes):
        try:
            p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait(timeout=10)


@pytest.fixture(scope="module")
async def stack_database(postgres_url: str) -> AsyncIterator[str]:
    """A fresh database for the module's platform (the ``database_url`` fixture is per test;
    one platform serves every test of a module)."""
    async with fresh_database(postgres_url, prefix="cxm_e2e") as url:
        yield url


@pytest.fixture(scope="module")
async def platform(
    kafka_bootstrap: str,
    stack_database: str,
    webhook_receiver: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    home = tmp_path_factory.mktemp("platform")
    prefix = f"e2e{uuid.uuid4().hex[:10]}."
    ports = {name: free_port() for name in SERVICES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    # Made here: the profile service's faust worker creates only the last level of it.
    (home / "data").mkdir()
    routing = home / "routing.yaml"
    routing.write_text(routing_yaml(webhook_receiver.base_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXM_")}
    env.update(
        CXM_MODE="local",
        CXM_KAFKA_BOOTSTRAP=kafka_bootstrap,
        CXM_DATABASE_URL=stack_database,
        CXM_TOPIC_PREFIX=prefix,
        CXM_TOPIC_PARTITIONS="2",
        CXM_DATA_DIR=str(home / "data"),
        CXM_ROUTING_CONFIG=str(routing),
        CXM_WEBHOOK_SECRETS=json.dumps({"E2E_WEBHOOK_SECRET": WEBHOOK_SECRET}),
        CXM_PROFILE_BASE_URL=urls["profile"],
        CXM_PUBLIC_BASE_URL=urls["alerting"],
        CXM_DELIVERY_POLL_SECONDS="0.2",
        # Decile and RFM cut points every 2 s instead of every 5 min.
        CXM_BASE_STATS_INTERVAL_S="2",
        **{f"CXM_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    )
    processes: list[_Process] = []
    try:
        for name in SERVICES:
            processes.append(_spawn(name, env, home / f"{name}.log"))
        async with httpx.AsyncClient(timeout=5) as probe:
            for p in processes:

                async def ready(p: _Process = p) -> bool:
                    if p.proc.poll() is not None:
                        raise AssertionError(f"{p.name} exited during start\n{p.tail()}")
                    try:
                        return (await probe.get(f"{urls[p.name]}/readyz")).status_code == 200
                    except httpx.HTTPError:
                        return False

                try:
                    await wait_until(ready, timeout=READY_TIMEOUT_S, what=f"{p.name} /readyz")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{p.tail()}") from None
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            httpx.AsyncClient(base_url=urls["ingest"], auth=(WRITE_KEY, ""), timeout=30) as ing,
            httpx.AsyncClient(base_url=urls["profile"], headers=headers, timeout=30) as prof,
            httpx.AsyncClient(base_url=urls["alerting"], headers=headers, timeout=30) as alrt,
        ):
            yield Platform(
                urls=urls,
                receiver=webhook_receiver,
                prefix=prefix,
                ingest=ing,
                api={"profile": prof, "alerting": alrt},
                processes=processes,
            )
    finally:
        await asyncio.to_thread(_stop, processes)
        with contextlib.suppress(Exception):
            await drop_topics(kafka_bootstrap, prefix=prefix)


# -- several platforms side by side (scale-out) -------------------------------------------------


@dataclass
class Worker:
    """One service process of a launched platform, with its own port."""

    service: str
    url: str
    process: _Process


@dataclass
class Launched:
    platform: Platform
    workers: list[Worker]

    def of(self, service: str) -> list[Worker]:
        return [w for w in self.workers if w.service == service]


LaunchPlatform = Callable[..., contextlib.AbstractAsyncContextManager[Launched]]


@pytest.fixture(scope="module")
def launch_platform(
    kafka_bootstrap: str,
    postgres_url: str,
    webhook_receiver: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> LaunchPlatform:
    """``async with launch_platform(workers={"profile": 2, "scoring": 2}) as launched``: a
    platform of its own (topic prefix, database, data directories) with that many processes
    per service (one for those not named); the extra ones have their own port and data
    directory, the same prefix and database. ``launched.platform`` talks to each service's
    first process. Every process is stopped, the topics and the database dropped on exit."""

    @contextlib.asynccontextmanager
    async def launch(
        *, workers: dict[str, int] | None = None, partitions: int = 4, **extra_env: str
    ) -> AsyncIterator[Launched]:
        counts = {name: 1 for name in SERVICES} | (workers or {})
        home = tmp_path_factory.mktemp("scaled")
        prefix = f"e2e{uuid.uuid4().hex[:10]}."
        routing = home / "routing.yaml"
        routing.write_text(routing_yaml(webhook_receiver.base_url))
        ports = {(name, i): free_port() for name in SERVICES for i in range(1, counts[name] + 1)}
        urls = {key: f"http://127.0.0.1:{port}" for key, port in ports.items()}
        base = {k: v for k, v in os.environ.items() if not k.startswith("CXM_")}
        processes: list[_Process] = []
        launched_workers: list[Worker] = []
        async with fresh_database(postgres_url, prefix="cxm_e2e") as database:
            base.update(
                CXM_MODE="local",
                CXM_KAFKA_BOOTSTRAP=kafka_bootstrap,
                CXM_DATABASE_URL=database,
                CXM_TOPIC_PREFIX=prefix,
                CXM_TOPIC_PARTITIONS=str(partitions),
                CXM_ROUTING_CONFIG=str(routing),
                CXM_WEBHOOK_SECRETS=json.dumps({"E2E_WEBHOOK_SECRET": WEBHOOK_SECRET}),
                CXM_PROFILE_BASE_URL=urls["profile", 1],
                CXM_PUBLIC_BASE_URL=urls["alerting", 1],
                CXM_DELIVERY_POLL_SECONDS="0.2",
                CXM_BASE_STATS_INTERVAL_S="2",
                **{f"CXM_{name.upper()}_PORT": str(ports[name, 1]) for name in SERVICES},
                **extra_env,
            )
            try:
                for (name, i), port in ports.items():
                    data = home / f"data-{name}-{i}"
                    data.mkdir()
                    env = base | {"CXM_DATA_DIR": str(data), f"CXM_{name.upper()}_PORT": str(port)}
                    label = name if i == 1 else f"{name}-{i}"
                    p = _spawn(name, env, home / f"{label}.log")
                    p.name = label
                    processes.append(p)
                    launched_workers.append(Worker(name, urls[name, i], p))
                async with httpx.AsyncClient(timeout=5) as probe:
                    for w in launched_workers:

                        async def ready(w: Worker = w) -> bool:
                            if w.process.proc.poll() is not None:
                                raise AssertionError(f"{w.process.name} exited\n{w.process.tail()}")
                            try:
                                return (await probe.get(f"{w.url}/readyz")).status_code == 200
                            except httpx.HTTPError:
                                return False

                        try:
                            await wait_until(
                                ready, timeout=READY_TIMEOUT_S, what=f"{w.url} /readyz"
                            )
                        except AssertionError as exc:
                            raise AssertionError(f"{exc}\n{w.process.tail()}") from None
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with (
                    httpx.AsyncClient(
                        base_url=urls["ingest", 1], auth=(WRITE_KEY, ""), timeout=30
                    ) as ing,
                    httpx.AsyncClient(
                        base_url=urls["profile", 1], headers=headers, timeout=30
                    ) as prof,
                    httpx.AsyncClient(
                        base_url=urls["alerting", 1], headers=headers, timeout=30
                    ) as alrt,
                ):
                    yield Launched(
                        Platform(
                            urls={name: urls[name, 1] for name in SERVICES},
                            receiver=webhook_receiver,
                            prefix=prefix,
                            ingest=ing,
                            api={"profile": prof, "alerting": alrt},
                            processes=processes,
                        ),
                        launched_workers,
                    )
            finally:
                await asyncio.to_thread(_stop, processes)
                with contextlib.suppress(Exception):
                    await drop_topics(kafka_bootstrap, prefix=prefix)

    return launch
