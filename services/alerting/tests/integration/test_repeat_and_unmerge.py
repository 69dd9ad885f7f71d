"""On the real broker and PostgreSQL: ``repeat_interval`` reminders of alerts left open
(per alert, and per aggregation group on a grouping route), and an identity unmerge moving
alerts and journey back to the restored customer."""

from __future__ import annotations

import asyncio
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


def _members(request) -> list[dict]:
    data = request.body["data"]
    return data["alerts"] if "alerts" in data else [data]


async def test_open_alert_is_reminded_every_repeat_interval_until_acknowledged(
    alerting_service, send_signals, signal_factory, webhook_receiver, waiter
):
    svc = await alerting_service(
        f"""
route:
  receiver: support
  group_wait: 0s
  repeat_interval: 1s
receivers:
  - name: support
    webhook_configs:
      - url: {webhook_receiver.base_url}/support
        secret_ref: TEST_SECRET
""",
        repeat_poll_seconds=0.1,
    )
    signal = signal_factory("detractor", "cus_rep1")
    aid = _aid(signal)
    await send_signals(signal)
    await waiter(lambda: len(webhook_receiver.requests) >= 3, what="two reminders")

    first, *reminders = webhook_receiver.requests[:3]
    assert first.headers["webhook-id"] == aid and first.body["type"] == "alert.firing"
    # Later notifications get their own webhook-id (receivers dedup by it), numbered.
    assert [r.headers["webhook-id"] for r in reminders] == [f"{aid}.repeated1", f"{aid}.repeated2"]
    for earlier, reminder in zip(webhook_receiver.requests, reminders, strict=False):
        assert reminder.verified
        assert reminder.body["type"] == "alert.repeated"
        assert reminder.body["data"]["status"] == "firing"
        assert reminder.body["data"]["alert_id"] == aid
        assert reminder.at - earlier.at >= 0.9  # not before repeat_interval

    # Acknowledged: someone owns it, the reminders stop.
    assert (await svc.client.post(f"/v1/alerts/{aid}/ack", json={"by": "agent"})).status_code == 200
    sent = len(webhook_receiver.requests)
    await asyncio.sleep(2.2)
    assert len(webhook_receiver.requests) <= sent + 1  # at most one already in flight
    alert = (await svc.client.get(f"/v1/alerts/{aid}")).json()
    assert [h["n"] for h in alert["history"] if h["action"] == "repeated"][:2] == [1, 2]


async def test_grouping_route_reminds_the_whole_group_once_after_its_last_notification(
    alerting_service, send_signals, signal_factory, webhook_receiver, waiter
):
    await alerting_service(
        f"""
route:
  receiver: support
  group_by: [customer_id]
  group_wait: 500ms
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: support
    webhook_configs:
      - url: {webhook_receiver.base_url}/support
        secret_ref: TEST_SECRET
""",
        repeat_poll_seconds=0.1,
    )
    burst = [signal_factory("churn_risk_high", "cus_rg"), signal_factory("detractor", "cus_rg")]
    await send_signals(*burst)
    await waiter(lambda: webhook_receiver.requests, what="first group notification")
    await asyncio.sleep(0.7)
    # The group changed (a new member): it is notified, and its repeat clock starts again.
    late = signal_factory("low_csat", "cus_rg")
    await send_signals(late)
    await waiter(lambda: len(webhook_receiver.requests) >= 3, timeout=10, what="group reminder")
    grouped, added, reminder = webhook_receiver.requests[:3]
    assert {m["alert_id"] for m in _members(grouped)} == {_aid(s) for s in burst}
    assert added.headers["webhook-id"] == _aid(late)

    # One reminder for the whole group, counted from its last notification (the new member).
    assert reminder.verified and reminder.body["type"] == "alert.group"
    assert reminder.headers["webhook-id"].startswith("grp_")
    assert reminder.headers["webhook-id"] != grouped.headers["webhook-id"]
    assert {m["alert_id"] for m in _members(reminder)} == {_aid(s) for s in [*burst, late]}
    assert {m["event"] for m in _members(reminder)} == {"repeated"}
    assert reminder.at - added.at >= 1.9
    await asyncio.sleep(0.5)
    assert len(webhook_receiver.requests) == 3


async def test_unmerge_moves_alerts_and_journey_back_to_the_restored_customer(
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
    for customer, event_id, minutes in (
        ("cus_b", "ev-b1", 9),
        ("cus_a", "ev-a1", 8),
        ("cus_a", "ev-a2", 7),
    ):
        touchpoint = ResolvedTouchpoint(
            event_id=event_id,
            type="support_contact",
            channel="app",
            occurred_at=now - timedelta(minutes=minutes),
            received_at=now,
            source="test",
            identifiers={"device_id": f"dev-{customer}"},
            customer_id=customer,
        )
        await send_signals(encode(touchpoint), topic=topics.touchpoints_resolved)
    # cus_b's own alert, raised before the merge.
    before = signal_factory("detractor", "cus_b")
    await send_signals(before)
    await waiter(lambda: webhook_receiver.requests, what="cus_b's alert delivered")

    def change(kind: str) -> bytes:
        return encode(
            IdentityChange(
                kind=kind,  # type: ignore[arg-type]
                merge_id="m-u1",
                winner_id="cus_a",
                loser_id="cus_b",
                reason="rule=shared_identifier type=email",
                occurred_at=datetime.now(UTC),
            )
        )

    await send_signals(change("merged"), topic=topics.identity_merges)

    async def customer_of(aid: str) -> str:
        return (await svc.client.get(f"/v1/alerts/{aid}")).json()["customer"]["customer_id"]

    await waiter(
        lambda: _equals(customer_of(_aid(before)), "cus_a"), what="alert moved to the winner"
    )
    # While merged, a signal on one of cus_b's own touchpoints is raised on cus_a ...
    on_b_event = signal_factory("low_csat", "cus_a")
    on_b_event.evidence["event_ids"] = ["ev-b1"]
    # ... and one on cus_a's own touchpoint.
    on_a_event = signal_factory("high_effort", "cus_a")
    on_a_event.evidence["event_ids"] = ["ev-a2"]
    await send_signals(on_b_event, on_a_event)
    await waiter(lambda: len(webhook_receiver.requests) >= 3, what="alerts raised while merged")

    await send_signals(change("unmerged"), topic=topics.identity_merges)
    await waiter(
        lambda: _equals(customer_of(_aid(before)), "cus_b"), what="alert moved back on unmerge"
    )

    restored = (await svc.client.get(f"/v1/alerts/{_aid(before)}")).json()
    assert restored["labels"]["customer_id"] == "cus_b"
    assert restored["profile_url"].endswith("/v1/profiles/cus_b")
    assert restored["history"][-1]["action"] == "customer unmerged"
    assert restored["history"][-1]["merge_id"] == "m-u1"
    assert [t["event_id"] for t in restored["last_touchpoints"]] == ["ev-b1"]
    assert await customer_of(_aid(on_b_event)) == "cus_b"  # its evidence is cus_b's touchpoint
    assert await customer_of(_aid(on_a_event)) == "cus_a"
    stays = (await svc.client.get(f"/v1/alerts/{_aid(on_a_event)}")).json()
    assert [t["event_id"] for t in stays["last_touchpoints"]] == ["ev-a2", "ev-a1"]

    # New evidence for the restored customer lands on its own alert again (same id).
    await send_signals(signal_factory("detractor", "cus_b"))

    async def enriched() -> bool:
        alert = (await svc.client.get(f"/v1/alerts/{_aid(before)}")).json()
        return len(alert["evidence"]) == 2

    await waiter(enriched, what="restored customer's signal on its own alert")
    listed = (await svc.client.get("/v1/alerts")).json()
    assert len(listed) == 3
    # A re-delivered unmerge changes nothing.
    await send_signals(change("unmerged"), topic=topics.identity_merges)
    await asyncio.sleep(0.5)
    assert await customer_of(_aid(before)) == "cus_b"
    assert await customer_of(_aid(on_a_event)) == "cus_a"


async def _equals(value, expected) -> bool:
    return (await value) == expected
