"""Signals on the real broker become stored, routed alerts delivered to real receivers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from cxm_alerting.routing.alert_ids import alert_id, window_start
from cxm_shared.events import ResolvedTouchpoint, encode
from cxm_shared.kafka import make_consumer

pytestmark = pytest.mark.integration


def routing(hooks: str, *, smtp: bool = False) -> str:
    email = "    email_configs:\n      - to: [support-team@example.com]\n" if smtp else ""
    return f"""
route:
  receiver: cx
  group_by: [kind, customer_id]
  routes:
    - receiver: support
      matchers: ['kind="churn_risk_high"']
      continue: true
    - receiver: marketing
      matchers: ['kind="churn_risk_high"', 'value_tier="gold"']
    - receiver: support
      matchers: ['kind=~"negative_feedback|detractor"']
receivers:
  - name: support
    sse: true
    ack_sla: 300ms
    escalate_to: cx
    webhook_configs:
      - url: {hooks}/support
        secret_ref: TEST_SECRET
{email}  - name: cx
    sse: true
    webhook_configs:
      - url: {hooks}/cx
        secret_ref: TEST_SECRET
  - name: marketing
    sse: true
    webhook_configs:
      - url: {hooks}/slack
        slack_compatible: true
inhibit_rules:
  - source_matchers: ['kind="churn_risk_high"', 'severity="critical"']
    target_matchers: ['kind="negative_feedback"', 'severity="warning"']
    equal: [customer_id]
"""


async def _alerts(client: Any, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/alerts", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_signal_on_kafka_becomes_routed_stored_alert_on_every_channel(
    alerting_service,
    send_signals,
    signal_factory,
    webhook_receiver,
    smtp_server,
    waiter,
    topics,
    kafka_bootstrap,
):
    svc = await alerting_service(
        routing(webhook_receiver.base_url, smtp=True),
        smtp_port=smtp_server.port,
        escalation_poll_seconds=60,
    )
    # The journey arrives on cx.touchpoints.resolved before the signal.
    touchpoint = ResolvedTouchpoint(
        event_id="ev-store-1",
        type="store_visit",
        channel="store",
        touchpoint="checkout",
        occurred_at=datetime.now(UTC) - timedelta(minutes=5),
        received_at=datetime.now(UTC),
        source="pos",
        identifiers={"email": "taro.yamada@example.co.jp"},
        customer_id="cus_7",
    )
    await send_signals(encode(touchpoint), topic=topics.touchpoints_resolved)

    async def journey_stored() -> bool:
        async with svc.app.state.engine.connect() as conn:
            n = await conn.scalar(text("SELECT count(*) FROM alerting.journey"))
        return n == 1

    await waiter(journey_stored, what="journey row")
    await send_signals(b"{not json")  # poison: dead-lettered, never blocks the partition
    signal = signal_factory("churn_risk_high", "cus_7", severity="critical", value_tier="gold")
    await send_signals(signal)

    expected = alert_id(
        kind="churn_risk_high",
        customer_id="cus_7",
        window_start=window_start(at=signal.occurred_at, window=timedelta(days=1)),
    )
    await waiter(
        lambda: webhook_receiver.at("/support") and webhook_receiver.at("/slack"), what="webhooks"
    )
    await waiter(lambda: smtp_server.messages, what="email")

    [stored] = await _alerts(svc.client, team="support")
    assert stored["alert_id"] == expected
    assert stored["receivers"] == ["support", "marketing"]
    assert stored["status"] == "open" and stored["team"] == "support"
    assert stored["customer"]["identifiers"] == {"email": "t***@example.co.jp"}
    assert stored["last_touchpoints"][0]["channel"] == "store"
    assert stored["profile_url"] == "http://profile.test/v1/profiles/cus_7"
    assert stored["churn_reasons"] == ["purchase gap 3x usual"]
    assert stored["history"][0]["receivers"] == ["support", "marketing"]

    hook = webhook_receiver.at("/support")[0]
    assert hook.verified and hook.headers["webhook-id"] == expected
    assert hook.body["data"]["alert_id"] == expected
    assert hook.body["data"]["last_touchpoints"][0]["touchpoint"] == "checkout"
    slack = webhook_receiver.at("/slack")[0].body
    assert "blocks" in slack and "churn_risk_high" in slack["text"]
    mail = smtp_server.messages[0]
    assert mail["to"] == ["support-team@example.com"]
    assert expected in mail["data"] and "taro.yamada" not in mail["data"]
    assert "t***@example.co.jp" in mail["data"]

    dlq = make_consumer(kafka_bootstrap, topics.dlq(topics.signals), group_id=None)
    await dlq.start()
    try:
        batch = await dlq.getmany(timeout_ms=5000)
        dead = [r for records in batch.values() for r in records]
        assert dead and dead[0].value == b"{not json"
    finally:
        await dlq.stop()

    explained = await svc.client.post(
        "/v1/routes/test", json={"labels": {"kind": "detractor", "severity": "warning"}}
    )
    assert explained.json()["receivers"] == ["support"]
    bad = await svc.client.post("/v1/routes/test", json={"labels": {"sevrity": "x"}})
    assert bad.status_code == 422 and "sevrity" in bad.text
    assert (
        await svc.client.get("/v1/alerts", headers={"Authorization": "Bearer no"})
    ).status_code == 401


async def test_grouping_reopen_inhibition_silence_and_escalation(
    alerting_service, send_signals, signal_factory, webhook_receiver, waiter
):
    svc = await alerting_service(routing(webhook_receiver.base_url))
    client = svc.client

    # Grouping: two signals of one (kind, customer, window) make one alert, one notification.
    first = signal_factory("detractor", "cus_g")
    second = signal_factory("detractor", "cus_g")
    await send_signals(first, second, first)  # and a redelivered duplicate
    await waiter(lambda: webhook_receiver.at("/support"), what="detractor webhook")

    async def evidence_count() -> int:
        alerts = await _alerts(client, kind="detractor")
        return len(alerts) == 1 and len(alerts[0]["evidence"]) == 2

    await waiter(evidence_count, what="both signals on one alert")
    [grouped] = await _alerts(client, kind="detractor")

    # Re-open: resolve, then new negative evidence re-opens the same alert.
    resolved = await client.post(f"/v1/alerts/{grouped['alert_id']}/resolve", json={"by": "ann"})
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    again = await client.post(f"/v1/alerts/{grouped['alert_id']}/ack", json={"by": "ann"})
    assert again.status_code == 409
    await send_signals(signal_factory("detractor", "cus_g"))

    async def reopened() -> bool:
        alert = (await client.get(f"/v1/alerts/{grouped['alert_id']}")).json()
        return alert["status"] == "open" and alert["reopen_count"] == 1

    await waiter(reopened, what="re-open")
    await waiter(
        lambda: any(
            r.headers["webhook-id"] == f"{grouped['alert_id']}.reopened1"
            for r in webhook_receiver.at("/support")
        ),
        what="re-open notification",
    )

    # Inhibition: an open critical churn alert mutes a warning negative-feedback alert.
    await send_signals(signal_factory("churn_risk_high", "cus_i", severity="critical"))
    await waiter(lambda: _alerts(client, kind="churn_risk_high"), what="churn alert")
    await send_signals(signal_factory("negative_feedback", "cus_i", severity="warning"))

    async def muted(kind: str, customer: str) -> dict[str, Any] | None:
        for alert in await _alerts(client, kind=kind, status="suppressed"):
            if alert["customer"]["customer_id"] == customer:
                return alert
        return None

    inhibited = await waiter(lambda: muted("negative_feedback", "cus_i"), what="inhibited")
    assert "inhibited by open alert" in inhibited["muted_by"]

    # Silence: created through the API, stored, mutes matching alerts until it expires.
    silence = await client.post(
        "/v1/silences",
        json={
            "matchers": ['kind="negative_feedback"', 'channel="sns"'],
            "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "created_by": "ops",
            "comment": "campaign backlash handled by PR",
        },
    )
    assert silence.status_code == 201, silence.text
    assert (
        await client.post(
            "/v1/silences",
            json={
                "matchers": ['kind=~".*"'],
                "ends_at": datetime.now(UTC).isoformat(),
                "created_by": "x",
                "comment": "y",
            },
        )
    ).status_code == 400
    await send_signals(signal_factory("negative_feedback", "cus_s", channel="sns"))
    silenced = await waiter(lambda: muted("negative_feedback", "cus_s"), what="silenced")
    assert silenced["muted_by"].startswith(f"silenced by {silence.json()['id']}")
    expired = await client.delete(f"/v1/silences/{silence.json()['id']}")
    assert expired.json()["state"] == "expired"
    # After expiry new evidence opens it for real.
    await send_signals(signal_factory("negative_feedback", "cus_s", channel="sns"))

    async def unmuted() -> bool:
        alerts = await _alerts(client, kind="negative_feedback", status="open")
        return any(a["customer"]["customer_id"] == "cus_s" for a in alerts)

    await waiter(unmuted, what="open after silence expired")

    # Escalation: support's 300ms ack SLA passes; the churn alert moves to cx.
    churn = (await _alerts(client, kind="churn_risk_high"))[0]

    async def escalated() -> dict[str, Any] | None:
        alert = (await client.get(f"/v1/alerts/{churn['alert_id']}")).json()
        return alert if alert["team"] == "cx" else None

    moved = await waiter(escalated, what="escalation to cx")
    assert moved["sla_breaches"] >= 1
    assert any(h.get("action") == "escalated" for h in moved["history"])
    await waiter(
        lambda: any(
            r.headers["webhook-id"].startswith(f"{churn['alert_id']}.escalated")
            for r in webhook_receiver.at("/cx")
        ),
        what="escalation webhook to cx",
    )
    acked = await client.post(f"/v1/alerts/{churn['alert_id']}/ack", json={"by": "bob"})
    assert acked.json()["status"] == "acknowledged" and acked.json()["assignee"] == "bob"
    assigned = await client.post(
        f"/v1/alerts/{churn['alert_id']}/assign", json={"assignee": "carol"}
    )
    assert assigned.json()["assignee"] == "carol"
    metrics = (await client.get("/metrics")).text
    assert "cxm_alerting_sla_breaches_total" in metrics
    assert 'cxm_alerting_alerts_raised_total{kind="churn_risk_high",team="support"}' in metrics


def retry_routing(hooks: str) -> str:
    cases = ["500", "503", "429", "400", "410", "timeout", "slow", "fast"]
    routes = "\n".join(f"    - receiver: r{c}\n      matchers: ['region=\"{c}\"']" for c in cases)
    receivers = "\n".join(
        f"  - name: r{c}\n    webhook_configs:\n      - url: {hooks}/{c}\n"
        "        secret_ref: TEST_SECRET"
        for c in cases
    )
    return f"route:\n  receiver: r500\n  routes:\n{routes}\nreceivers:\n{receivers}\n"


async def test_retry_behaviour_per_receiver_answer(
    alerting_service, send_signals, signal_factory, webhook_receiver, waiter
):
    for code in ("500", "503", "429", "400", "410"):
        webhook_receiver.script[f"/{code}"] = [int(code)]
    webhook_receiver.script["/timeout"] = ["timeout"]
    webhook_receiver.delays["/slow"] = 3.0
    svc = await alerting_service(
        retry_routing(webhook_receiver.base_url), delivery_timeout_seconds=0.5
    )
    await send_signals(signal_factory("detractor", "cus_slow", region="slow"))
    await waiter(lambda: webhook_receiver.at("/slow"), what="slow receiver hit")
    start = asyncio.get_running_loop().time()
    await send_signals(signal_factory("detractor", "cus_fast", region="fast"))
    await waiter(lambda: webhook_receiver.at("/fast"), what="fast receiver")
    # The slow receiver (3s, beyond the 0.5s timeout) does not hold up another receiver.
    assert asyncio.get_running_loop().time() - start < 2.0
    for code in ("500", "503", "429", "400", "410", "timeout"):
        await send_signals(signal_factory("detractor", f"cus_{code}", region=code))

    async def settled() -> dict[str, tuple[str, int]] | None:
        async with svc.app.state.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT receiver, status, attempts FROM alerting.deliveries")
                )
            ).all()
        state = {r.receiver: (r.status, r.attempts) for r in rows}
        wanted = {"r500", "r503", "r429", "r400", "r410", "rtimeout"}
        if wanted <= set(state) and all(state[w][0] != "pending" for w in wanted):
            return state
        return None

    state = await waiter(settled, timeout=30, what="deliveries settled")
    for retried in ("r500", "r503", "r429", "rtimeout"):
        assert state[retried] == ("sent", 2), (retried, state[retried])
    for permanent in ("r400", "r410"):
        assert state[permanent] == ("failed", 1), (permanent, state[permanent])
    # Retry-After: 1 was honoured (the backoff alone is at most 0.2s here).
    hits = webhook_receiver.at("/429")
    assert hits[1].at - hits[0].at >= 0.95
    # Every retry carried the same webhook-id.
    for code in ("500", "503", "429", "timeout"):
        ids = {r.headers["webhook-id"] for r in webhook_receiver.at(f"/{code}")}
        assert len(ids) == 1


async def test_sse_resume_with_last_event_id_has_no_gaps(
    alerting_service, send_signals, signal_factory, webhook_receiver, waiter
):
    import httpx

    svc = await alerting_service(routing(webhook_receiver.base_url), escalation_poll_seconds=60)
    url = f"{svc.base_url}/v1/teams/support/stream"
    headers = {"Authorization": "Bearer test-token"}

    async def read(n: int, last: str | None) -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        h = dict(headers, **({"Last-Event-ID": last} if last else {}))
        async with (
            httpx.AsyncClient(timeout=20) as client,
            client.stream("GET", url, headers=h) as r,
        ):
            assert r.status_code == 200
            event_id = event = None
            async for line in r.aiter_lines():
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line == "" and event_id:
                    got.append((event_id, event or ""))
                    event_id = None
                    if len(got) == n:
                        return got
        return got

    await send_signals(*[signal_factory("detractor", f"cus_sse{i}") for i in range(3)])
    first = await asyncio.wait_for(read(3, None), 20)
    assert [e[0] for e in first] == ["1", "2", "3"]
    # While disconnected, more alerts arrive; the resumed stream picks up exactly after 3.
    await send_signals(*[signal_factory("detractor", f"cus_sse{i}") for i in range(3, 6)])
    resumed = await asyncio.wait_for(read(3, first[-1][0]), 20)
    assert [e[0] for e in resumed] == ["4", "5", "6"]
    assert (await svc.client.get("/v1/teams/nobody/stream")).status_code == 404
