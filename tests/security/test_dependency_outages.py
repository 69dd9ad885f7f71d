"""While PostgreSQL or Kafka is down, every route answers at once: 503 with ``Retry-After``
where it needs the missing dependency, its usual answer where it does not, never a 500 and
never a hang. Once the dependency is back, every route answers as before, without restarting
any service.

The four services run as processes (``python -m cxm_<service>``) against a private Kafka
broker and a private PostgreSQL cluster that this module stops and starts (see
``private_infra``); the shared ones are never touched.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

# A request may take this long while a dependency is down (the ingest waits this long for a
# Kafka acknowledgement before answering 503; see CXM_PRODUCE_TIMEOUT_SECONDS below).
ANSWER_WITHIN_S = 8.0
RECOVER_WITHIN_S = 60.0


@pytest.fixture
def stack(security_platform: Any) -> Any:
    return security_platform.platform


@dataclass
class Probe:
    service: str
    method: str
    path: str
    needs: frozenset[str]  # the dependencies whose loss makes this route answer 503
    ok: int = 200
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.service} {self.method} {self.path}"


def event(email: str) -> dict[str, Any]:
    return {
        "event_id": f"ev-{uuid.uuid4().hex}",
        "type": "page_view",
        "channel": "web",
        "occurred_at": "2026-03-01T10:00:00Z",
        "identifiers": {"email": email},
    }


def fresh_email() -> str:
    return f"probe-{uuid.uuid4().hex[:8]}@example.com"


def segment(kind: str) -> dict[str, Any]:
    message = {"type": kind, "messageId": uuid.uuid4().hex, "anonymousId": uuid.uuid4().hex}
    return message | ({"event": "Probe"} if kind == "track" else {})


def probes(customer_id: str, email: str) -> list[Probe]:
    pg, kafka = frozenset({"postgres"}), frozenset({"kafka"})
    both, none = pg | kafka, frozenset[str]()
    missing = f"cust-missing-{uuid.uuid4().hex[:8]}"
    return [
        # The ingest's dedup store is an optimisation (consumers dedup too): without
        # PostgreSQL it still accepts; without Kafka nothing can be accepted.
        Probe("ingest", "POST", "/v1/events", kafka, json=lambda: event(fresh_email())),
        Probe(
            "ingest",
            "POST",
            "/v1/events/batch",
            kafka,
            json=lambda: {"events": [event(fresh_email())]},
        ),
        Probe("ingest", "POST", "/v1/track", kafka, json=lambda: segment("track")),
        Probe("ingest", "POST", "/v1/batch", kafka, json=lambda: {"batch": [segment("page")]}),
        Probe("ingest", "GET", "/readyz", both),
        Probe(
            "profile", "GET", "/v1/profiles/lookup", pg, params={"type": "email", "value": email}
        ),
        Probe("profile", "GET", f"/v1/profiles/{customer_id}", pg),
        Probe("profile", "GET", f"/v1/profiles/{customer_id}/timeline", pg),
        Probe("profile", "GET", f"/v1/profiles/{customer_id}/merges", pg),
        Probe("profile", "GET", "/v1/quarantine", pg),
        Probe("profile", "DELETE", f"/v1/profiles/{missing}", pg, ok=404),
        Probe("profile", "POST", f"/v1/merges/{missing}/unmerge", pg, ok=404),
        Probe("profile", "POST", f"/v1/quarantine/{missing}/approve", pg, ok=404),
        Probe("profile", "GET", "/readyz", both),
        Probe("scoring", "GET", "/readyz", kafka),
        Probe("scoring", "GET", "/healthz", none),
        Probe("alerting", "GET", "/v1/alerts", pg),
        Probe("alerting", "GET", f"/v1/alerts/{missing}", pg, ok=404),
        Probe("alerting", "POST", f"/v1/alerts/{missing}/ack", pg, ok=404, json={"by": "probe"}),
        Probe("alerting", "GET", "/v1/silences", pg),
        Probe("alerting", "POST", "/v1/routes/test", none, json={"labels": {"kind": "detractor"}}),
        Probe("alerting", "GET", "/readyz", both),
    ]


async def answer(stack: Any, probe: Probe) -> tuple[int, httpx.Response | None, float]:
    """(status, response, seconds); status 0 when the request failed or timed out."""
    if probe.service == "ingest":
        client = stack.ingest
    elif probe.service in stack.api:
        client = stack.api[probe.service]
    else:
        client = httpx.AsyncClient(base_url=stack.urls[probe.service])
    body = probe.json() if callable(probe.json) else probe.json
    started = time.monotonic()
    try:
        response = await client.request(
            probe.method,
            probe.path,
            json=body,
            params=probe.params or None,
            timeout=ANSWER_WITHIN_S + 5,
        )
    except httpx.HTTPError:
        return 0, None, time.monotonic() - started
    finally:
        if client not in (stack.ingest, *stack.api.values()):
            await client.aclose()
    return response.status_code, response, time.monotonic() - started


async def answers(stack: Any, checks: list[Probe]) -> list[tuple[Probe, int, Any, float]]:
    results = await asyncio.gather(*(answer(stack, p) for p in checks))
    return [(p, *r) for p, r in zip(checks, results, strict=True)]


def describe(results: list[tuple[Probe, int, Any, float]]) -> str:
    return "\n".join(
        f"  {p.name}: {status} in {took:.1f}s {(r.text[:160] if r is not None else '')}"
        for p, status, r, took in results
    )


async def check_outage(stack: Any, checks: list[Probe], down: str) -> None:
    results = await answers(stack, checks)
    wrong = []
    for probe, status, response, took in results:
        if took > ANSWER_WITHIN_S:
            wrong.append(probe)
        elif down in probe.needs:
            if status != 503 or not response.headers.get("retry-after", "").isdigit():
                wrong.append(probe)
        elif status != probe.ok:
            wrong.append(probe)
    assert not wrong, f"with {down} down:\n" + describe([r for r in results if r[0] in wrong])


async def recovered(stack: Any, checks: list[Probe], what: str) -> float:
    """Seconds until every route answers as it did before the outage."""
    started = time.monotonic()
    last: list[tuple[Probe, int, Any, float]] = []
    while time.monotonic() - started < RECOVER_WITHIN_S:
        last = await answers(stack, checks)
        if all(status == p.ok for p, status, _, _ in last):
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    failing = [r for r in last if r[1] != r[0].ok]
    raise AssertionError(
        f"not recovered {RECOVER_WITHIN_S:.0f}s after {what} came back:\n" + describe(failing)
    )


async def known_customer(stack: Any) -> tuple[str, str]:
    email = f"outage-{uuid.uuid4().hex[:8]}@example.com"
    await stack.post(event(email))
    profile = await stack.profile_when("email", email, lambda p: True, what="the probe profile")
    return profile["customer_id"], email


async def test_routes_answer_503_while_postgres_is_down_and_recover(
    stack: Any, private_infra: Any
) -> None:
    customer_id, email = await known_customer(stack)
    checks = probes(customer_id, email)
    baseline = await answers(stack, checks)
    assert all(s == p.ok for p, s, _, _ in baseline), describe(baseline)

    await asyncio.to_thread(private_infra.stop_postgres)
    try:
        await check_outage(stack, checks, "postgres")
    finally:
        await asyncio.to_thread(private_infra.start_postgres)
    took = await recovered(stack, checks, "PostgreSQL")
    print(f"recovered {took:.1f}s after PostgreSQL came back")
    # The events accepted during the outage were resolved once the database was back.
    await stack.profile_when("email", email, lambda p: True, what="the profile after recovery")
    for p in stack.processes:
        assert p.proc.poll() is None, f"{p.name} exited\n{p.tail()}"


async def test_routes_answer_503_while_kafka_is_down_and_recover(
    stack: Any, private_infra: Any
) -> None:
    customer_id, email = await known_customer(stack)
    victim, victim_email = await known_customer(stack)
    checks = probes(customer_id, email)

    await asyncio.to_thread(private_infra.stop_kafka)
    try:
        await check_outage(stack, checks, "kafka")
        # An erasure is committed in PostgreSQL with its announcement in the outbox: it is
        # answered at once, and announced once Kafka is back.
        started = time.monotonic()
        erased = await stack.api["profile"].delete(f"/v1/profiles/{victim}")
        assert erased.status_code == 200, erased.text
        assert time.monotonic() - started < ANSWER_WITHIN_S
    finally:
        await asyncio.to_thread(private_infra.start_kafka)
    took = await recovered(stack, checks, "Kafka")
    print(f"recovered {took:.1f}s after Kafka came back")
    # The pipeline flows again end to end: a new event reaches the profile API.
    await known_customer(stack)
    assert (await stack.lookup("email", victim_email)).status_code == 404
    for p in stack.processes:
        assert p.proc.poll() is None, f"{p.name} exited\n{p.tail()}"
