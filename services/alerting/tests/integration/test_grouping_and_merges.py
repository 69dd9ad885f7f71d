"""Aggregation-group timing on the real broker and PostgreSQL (a route with a group_wait sends
one grouped notification per group), and identity merges re-keying a customer's alerts and
journey to the surviving customer."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from cxm_alerting.routing.alert_ids import alert_id, window_start
from cxm_shared.events import IdentityChange, ResolvedTouchpoint, encode

pytestmark = pytest.mark.integration


def _aid(signal) -> str:
    return alert_id(
        kind=signal.kind,
        customer_id=signal.customer_id,
        window_start=window_start(at=signal.occurred_at, window=timedelta(days=1)),
    )


async def test_alerts_of_one_group_within_group_wait_go_out_as_one_notification(
    alerting_service, send_signals, signal_factory, webhook_receiver, waiter
):
    await alerting_service(
        f"""
route:
  receiver: support
  group_by: [customer_id]
  group_wait: 1s
  group_interval: 2s
receivers:
  - name: support
    webhook_configs:
      - url: {webhook_receiver.base_url}/support
        secret_ref: TEST_SECRET
"""
    )
    burst = [
        signal_factory("churn_risk_high", "cus_g1", severity="critical"),
        signal_factory("detractor", "cus_g1"),
        signal_factory("low_csat", "cus_g1"),
        signal_factory("detractor", "cus_g2"),
    ]
    sent_at = time.monotonic()
    await send_signals(*burst)
    await waiter(lambda: len(webhook_receiver.requests) >= 2, what="two group notifications")

    by_customer = {}
    for request in webhook_receiver.requests:
        data = request.body["data"]
        members = data["alerts"] if "alerts" in data else [data]
        by_customer[members[0]["customer"]["customer_id"]] = (request, members)
    grouped, members = by_customer["cus_g1"]
    assert grouped.verified and grouped.body["type"] == "alert.group"
    assert grouped.headers["webhook-id"].startswith("grp_")
    assert {m["alert_id"] for m in members} == {_aid(s) for s in burst[:3]}
    assert grouped.at - sent_at >= 0.9  # held for group_wait
    single, [only] = by_customer["cus_g2"]
    # A group of one is an ordinary alert notification: webhook-id = alert id.
    assert single.verified and single.headers["webhook-id"] == only["alert_id"] == _aid(burst[3])

    # A new alert in a group that was just notified waits for group_interval.
    late = signal_factory("high_effort", "cus_g1")
    await send_signals(late)
    await waiter(lambda: len(webhook_receiver.requests) >= 3, what="next flush of the group")
    follow_up = webhook_receiver.requests[2]
    assert follow_up.headers["webhook-id"] == _aid(late)
    assert follow_up.at - grouped.at >= 1.9
    assert len(webhook_receiver.requests) == 3


async def test_identity_merge_moves_alerts_and_journey_to_the_surviving_customer(
    alerting_service, send_signals, signal_factory, webhook_receiver, waiter, topics
):
    svc = await alerting_service(
        f"""
route:
  receiver: support
  group_wait: 0s
receivers:
  - name: support
    sse: true
    webhook_configs:
      - url: {webhook_receiver.base_url}/support
        secret_ref: TEST_SECRET
"""
    )
    now = datetime.now(UTC)
    for customer, event_id, channel in (("cus_lose", "ev-l", "app"), ("cus_win", "ev-w", "web")):
        touchpoint = ResolvedTouchpoint(
            event_id=event_id,
            type="support_contact",
            channel=channel,
            occurred_at=now - timedelta(minutes=3),
            received_at=now,
            source="test",
            identifiers={"device_id": f"dev-{customer}"},
            customer_id=customer,
        )
        await send_signals(encode(touchpoint), topic=topics.touchpoints_resolved)
    first = signal_factory("detractor", "cus_lose")
    await send_signals(first)
    loser_alert = _aid(first)
    await waiter(lambda: webhook_receiver.requests, what="loser's alert delivered")

    merge = IdentityChange(
        kind="merged",
        merge_id="m-1",
        winner_id="cus_win",
        loser_id="cus_lose",
        reason="rule=shared_identifier type=email",
        occurred_at=datetime.now(UTC),
    )
    await send_signals(encode(merge), topic=topics.identity_merges)

    async def rekeyed() -> dict | None:
        alert = (await svc.client.get(f"/v1/alerts/{loser_alert}")).json()
        return alert if alert["labels"]["customer_id"] == "cus_win" else None

    moved = await waiter(rekeyed, what="alert re-keyed to the winner")
    assert moved["customer"]["customer_id"] == "cus_win"
    assert moved["profile_url"].endswith("/v1/profiles/cus_win")
    assert moved["history"][-1]["action"] == "customer merged"
    assert moved["history"][-1]["from_customer"] == "cus_lose"

    # New evidence for the winner lands on the same alert (one alert per kind, customer,
    # window), whose journey now spans both former customers' touchpoints.
    await send_signals(signal_factory("detractor", "cus_win"))

    async def enriched() -> dict | None:
        alert = (await svc.client.get(f"/v1/alerts/{loser_alert}")).json()
        return alert if len(alert["evidence"]) == 2 else None

    alert = await waiter(enriched, what="winner's signal added to the moved alert")
    assert {t["event_id"] for t in alert["last_touchpoints"]} == {"ev-l", "ev-w"}
    listed = (await svc.client.get("/v1/alerts")).json()
    assert [a["alert_id"] for a in listed] == [loser_alert]
    assert {a["customer"]["customer_id"] for a in listed} == {"cus_win"}
    assert len(webhook_receiver.requests) == 1  # evidence added, no second notification
