"""Fixtures for the alerting integration tests: the service on a free port (in-process
uvicorn), a real webhook receiver (aiohttp) that verifies Standard Webhooks signatures, a
real SMTP server (aiosmtpd), and a signal producer on the test's private topics."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from aiohttp import web
from aiosmtpd.controller import Controller

from cxm_alerting.api import create_app
from cxm_alerting.config import AlertingSettings
from cxm_alerting.notify.signing import verify
from cxm_shared.events import Signal, encode
from cxm_shared.kafka import ensure_topics, make_producer
from cxm_shared.topics import Topics

SECRET = "whsec_" + base64.b64encode(b"integration-test-secret-0123456789").decode()
TOKEN = "test-token"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float
    verified: bool


@dataclass
class WebhookReceiver:
    """Answers per path: a scripted list of statuses (then 200); records every request."""

    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[int | str]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]


async def wait_until(check: Callable[[], Any], *, timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    state = WebhookReceiver()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        try:
            verify(secret=SECRET, headers=dict(request.headers), body=body, now=datetime.now(UTC))
            verified = True
        except ValueError:
            verified = False
        state.requests.append(
            Received(path, dict(request.headers), orjson.loads(body), time.monotonic(), verified)
        )
        if path in state.delays:
            await asyncio.sleep(state.delays[path])
        script = state.script.get(path) or []
        answer = script.pop(0) if script else 200
        if answer == "timeout":
            await asyncio.sleep(5)
            return web.Response(status=200)
        headers = {"Retry-After": "1"} if answer == 429 else {}
        return web.Response(status=int(answer), headers=headers)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    sock = free_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    state.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            {"to": list(envelope.rcpt_tos), "data": envelope.content.decode("utf-8", "replace")}
        )
        return "250 OK"


@pytest.fixture
def smtp_server() -> Any:
    mailbox = _Mailbox()
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    mailbox.port = port  # type: ignore[attr-defined]
    try:
        yield mailbox
    finally:
        controller.stop()


@dataclass
class RunningService:
    app: Any
    base_url: str
    client: httpx.AsyncClient
    settings: AlertingSettings


ServiceFactory = Callable[..., Awaitable[RunningService]]


@pytest.fixture
async def alerting_service(
    kafka_bootstrap: str, database_url: str, topics: Topics, tmp_path: Path
) -> AsyncIterator[ServiceFactory]:
    """Start the service (uvicorn on a free port) with a routing YAML and settings."""
    started: list[tuple[uvicorn.Server, asyncio.Task[None], httpx.AsyncClient]] = []

    async def start(routing_yaml: str, **overrides: Any) -> RunningService:
        path = tmp_path / "routing.yaml"
        path.write_text(routing_yaml)
        options: dict[str, Any] = dict(
            kafka_bootstrap=kafka_bootstrap,
            database_url=database_url,
            topic_prefix=topics.prefix,
            topic_partitions=2,
            routing_config=path,
            api_tokens=TOKEN,
            webhook_secrets={"TEST_SECRET": SECRET},
            delivery_timeout_seconds=1.0,
            delivery_poll_seconds=0.1,
            retry_base_seconds=0.05,
            retry_max_seconds=0.2,
            escalation_poll_seconds=0.2,
            profile_base_url="http://profile.test",
        )
        options.update(overrides)
        settings = AlertingSettings(**options)
        app = create_app(settings)
        sock = free_socket()
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        await wait_until(lambda: server.started, timeout=60, what="service start")
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        client = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        started.append((server, task, client))
        return RunningService(app, base_url, client, settings)

    try:
        yield start
    finally:
        for server, task, client in started:
            await client.aclose()
            server.should_exit = True
            await asyncio.wait_for(task, 30)


@pytest.fixture
async def send_signals(
    kafka_bootstrap: str, topics: Topics
) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    await ensure_topics(kafka_bootstrap, topics.all_specs(partitions=2))
    producer = make_producer(kafka_bootstrap)
    await producer.start()

    async def send(*signals: Signal | bytes, topic: str | None = None) -> None:
        for signal in signals:
            if isinstance(signal, Signal):
                value, key = encode(signal), signal.customer_id.encode()
            else:
                value, key = signal, b"poison"
            await producer.send_and_wait(topic or topics.signals, value, key=key)

    try:
        yield send
    finally:
        await producer.stop()


def make_signal(
    kind: str = "negative_feedback",
    customer: str = "cus_1",
    *,
    severity: str = "warning",
    signal_id: str | None = None,
    occurred_at: datetime | None = None,
    **labels: str,
) -> Signal:
    return Signal(
        signal_id=signal_id or f"{kind}:{customer}:{time.monotonic_ns()}",
        kind=kind,  # type: ignore[arg-type]
        customer_id=customer,
        occurred_at=occurred_at or datetime.now(UTC),
        severity=severity,  # type: ignore[arg-type]
        labels=labels,
        evidence={
            "reason": "NPS 2 after a late delivery",
            "event_ids": ["e1"],
            "scores": {"nps": 2, "churn_risk": 0.81},
            "churn_reasons": ["purchase gap 3x usual"],
        },
    )


@pytest.fixture
def signal_factory() -> Callable[..., Signal]:
    return make_signal


@pytest.fixture
def waiter() -> Callable[..., Awaitable[Any]]:
    return wait_until


@pytest.fixture
def webhook_secret() -> str:
    return SECRET
