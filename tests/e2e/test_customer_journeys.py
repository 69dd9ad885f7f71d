"""A customer's journey posted over HTTP, followed through the whole platform: one profile
with every identifier, scores and segments in the profile API; a detractor's angry comment
reaching the support team's webhook and live stream with the journey attached; an erased
customer gone from every API."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FOUR_CHANNELS = {"web", "app", "store", "call_center"}


@dataclass
class Journey:
    """One customer's identifiers and the events posted for them, oldest first."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        r = self.run
        self.ids = {
            "anonymous_id": f"anon-{r}",
            "device_id": f"dev-{r}",
            "user_id": f"usr-{r}",
            "email": f"hanako.{r}@example.jp",
            "phone": f"080-{int(r[:4], 16) % 10_000:04d}-{int(r[4:], 16) % 10_000:04d}",
            "loyalty_id": f"LC-{r}",
        }
        self.start = datetime.now(UTC) - timedelta(days=20)

    def add(
        self,
        type_: str,
        channel: str,
        touchpoint: str,
        *id_types: str,
        day: float,
        properties: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        event = {
            "event_id": f"e2e-{self.run}-{len(self.events) + 1:02d}",
            "type": type_,
            "channel": channel,
            "touchpoint": touchpoint,
            "occurred_at": (self.start + timedelta(days=day)).isoformat(),
            "identifiers": {t: self.ids[t] for t in id_types},
            "properties": properties or {},
            "context": {"locale": "ja-JP"},
            **extra,
        }
        self.events.append(event)
        return event

    def across_four_channels(self, *, calls: int) -> Journey:
        """Browse anonymously, sign up on the web, buy in the app, register a loyalty card
        and buy in a store, then call the hotline ``calls`` times about a late parcel."""
        self.add("page_view", "web", "product_page", "anonymous_id", day=0)
        self.add(
            "page_view",
            "web",
            "signup",
            "anonymous_id",
            "user_id",
            "email",
            day=0.1,
            traits={"region": "kanto", "age": 34},
        )
        self.add("screen_view", "app", "login", "device_id", "user_id", day=1)
        shoes = {"sku": "SHO-1", "category": "shoes", "brand": "aozora", "price": 12000.0}
        self.add(
            "purchase",
            "app",
            "checkout",
            "device_id",
            "user_id",
            day=1.1,
            properties={
                "order_id": f"o1-{self.run}",
                "amount": 12000.0,
                "currency": "JPY",
                "items": [shoes],
            },
        )
        self.add(
            "store_visit",
            "store",
            "loyalty_signup",
            "loyalty_id",
            "email",
            "phone",
            day=3,
            properties={"store_id": "st-shibuya"},
            traits={"region": "kansai"},
        )
        self.add(
            "purchase",
            "store",
            "register",
            "loyalty_id",
            day=3.1,
            properties={
                "order_id": f"o2-{self.run}",
                "amount": 8000.0,
                "currency": "JPY",
                "items": [{**shoes, "sku": "SHO-2", "price": 8000.0}],
            },
        )
        for i in range(calls):
            self.add(
                "support_contact",
                "call_center",
                "hotline",
                "phone",
                day=6 + 3 * i,
                properties={"reason": "delivery_delay", "wait_seconds": 1500.0, "resolved": False},
            )
        return self

    def angry_detractor_survey(self) -> dict[str, Any]:
        return self.add(
            "survey_response",
            "call_center",
            "post_contact_survey",
            "phone",
            day=19.9,
            properties={"nps": 2, "csat": 1, "comment": "待ち時間が長すぎて不満です。"},
        )


def scored(count: int) -> Any:
    """A profile is ready once all ``count`` events are applied to its scores."""
    return lambda p: (p.get("scores") or {}).get("events_applied", 0) >= count


async def test_journey_across_four_channels_is_one_profile_with_scores_and_segments(
    platform,
) -> None:
    journey = Journey().across_four_channels(calls=3)
    survey = journey.add(
        "survey_response",
        "email",
        "nps_survey",
        "email",
        day=19,
        properties={"nps": 3, "csat": 2, "comment": "配達が遅れて最悪でした。"},
    )
    await platform.post(*journey.events)

    profile = await platform.profile_when(
        "user_id",
        journey.ids["user_id"],
        scored(len(journey.events)),
        what="every event of the journey scored",
    )
    customer = profile["customer_id"]
    for type_, value in journey.ids.items():
        found = await platform.lookup(type_, value)
        assert found.status_code == 200, (type_, found.text)
        assert found.json()["customer_id"] == customer, type_
    assert {i["type"] for i in profile["identifiers"]} == set(journey.ids)
    raw = json.dumps(profile)
    assert journey.ids["email"] not in raw and journey.ids["phone"] not in raw
    assert profile["traits"]["region"]["value"] == "kansai"  # the latest answer wins
    assert profile["traits"]["region"]["channel"] == "store"

    timeline = await platform.api["profile"].get(
        f"/v1/profiles/{customer}/timeline", params={"limit": 100}
    )
    assert timeline.status_code == 200
    assert {i["event_id"] for i in timeline.json()["items"]} == {
        e["event_id"] for e in journey.events
    }
    assert {i["channel"] for i in timeline.json()["items"]} >= FOUR_CHANNELS

    scores = profile["scores"]
    assert scores["customer_id"] == customer
    assert scores["nps"]["latest"]["score"] == survey["properties"]["nps"]
    assert scores["csat"]["latest"]["score"] == 2
    assert scores["rfm"]["order_count"] == 2
    assert scores["rfm"]["total_amount"] == 20000.0
    assert scores["ctb"]["category"][0]["value"] == "shoes"
    assert scores["sentiment"]["rolling"] < 0
    assert 0.0 <= scores["churn_risk"] <= 1.0
    # A detractor who called three times about the same late parcel.
    assert {"unhappy", "repeat_problem"} <= set(profile["segments"]), profile["segments"]
    assert profile["segments"] == scores["segments"]


async def journey_caught_up(bootstrap: str, prefix: str) -> bool:
    """Alerting's journey consumer (its own group, beside the signals one) has committed the
    end of the resolved touchpoints and the identity changes: the journey an alert attaches is
    complete. A signal can overtake the touchpoints before it on that other path; here the
    test waits, as the touchpoints of a real journey come well before a later survey."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{prefix}cxm-alerting.journey")
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(topic, p)
            for topic in (f"{prefix}cx.touchpoints.resolved", f"{prefix}cx.identity.merges")
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return all(
        end == 0 or (tp in committed and committed[tp].offset >= end) for tp, end in ends.items()
    )


async def test_angry_detractor_reaches_support_webhook_and_stream_with_the_journey(
    platform, kafka_bootstrap: str
) -> None:
    journey = Journey().across_four_channels(calls=1)
    await platform.post(*journey.events)
    profile = await platform.profile_when(
        "phone", journey.ids["phone"], scored(len(journey.events)), what="journey scored"
    )
    customer = profile["customer_id"]
    await platform.until(
        lambda: journey_caught_up(kafka_bootstrap, platform.prefix),
        timeout=60,
        what="alerting's journey consumer caught up",
    )
    survey = journey.angry_detractor_survey()
    await platform.post(survey)

    async def support_hook() -> Any:
        for d in platform.receiver.at("/support"):
            data = d.body["data"]
            if data["customer"]["customer_id"] == customer and data["labels"]["kind"] == (
                "detractor"
            ):
                return d
        return None

    delivery = await platform.until(support_hook, timeout=60, what="detractor alert at /support")
    assert delivery.verified, "webhook signature did not verify (Standard Webhooks)"
    data = delivery.body["data"]
    assert delivery.headers["webhook-id"] == data["alert_id"]
    assert delivery.body["type"] == "alert.firing"
    assert data["labels"]["channel"] == "call_center"
    assert survey["event_id"] in data["evidence"][0]["event_ids"]
    assert data["profile_url"] == f"{platform.urls['profile']}/v1/profiles/{customer}"
    journey_ids = {e["event_id"] for e in journey.events}
    attached = data["last_touchpoints"]
    assert {t["event_id"] for t in attached} <= journey_ids
    assert {t["channel"] for t in attached} >= FOUR_CHANNELS, attached
    body = json.dumps(delivery.body, ensure_ascii=False)
    for raw in (journey.ids["email"], journey.ids["phone"], "待ち時間"):
        assert raw not in body  # masked identifiers only, never the comment itself

    (stored,) = [
        a
        for a in await platform.alerts(kind="detractor")
        if a["customer"]["customer_id"] == customer
    ]
    assert stored["alert_id"] == data["alert_id"]
    assert stored["receivers"] == ["support"]
    for team in ("logistics", "cx"):
        assert not [
            d
            for d in platform.receiver.at(f"/{team}")
            if d.body["data"]["customer"]["customer_id"] == customer
        ], f"the {team} team was sent this customer's alert"

    events = await platform.stream(
        "support",
        until=lambda evs: any(e["data"]["alert_id"] == data["alert_id"] for e in evs),
        timeout=20,
    )
    (live,) = [e for e in events if e["data"]["alert_id"] == data["alert_id"]]
    assert live["event"] == "firing"
    assert live["data"]["customer"]["customer_id"] == customer
    assert {t["channel"] for t in live["data"]["last_touchpoints"]} >= FOUR_CHANNELS


async def test_erased_customer_disappears_from_every_api(platform) -> None:
    journey = Journey().across_four_channels(calls=1)
    journey.angry_detractor_survey()
    bystander = Journey().across_four_channels(calls=1)  # erasing one must spare the other
    bystander.angry_detractor_survey()
    await platform.post(*journey.events, *bystander.events)
    profile = await platform.profile_when(
        "email", journey.ids["email"], scored(len(journey.events)), what="journey scored"
    )
    other = await platform.profile_when(
        "email", bystander.ids["email"], scored(len(bystander.events)), what="bystander scored"
    )
    ids = {profile["customer_id"], *profile["merged_ids"]}

    async def alerts_of(customers: set[str]) -> list[dict[str, Any]]:
        return [
            a
            for kind in ("detractor", "negative_feedback", "low_csat", "churn_risk_high")
            for a in await platform.alerts(kind=kind)
            if a["customer"]["customer_id"] in customers
            or a["labels"].get("customer_id") in customers
        ]

    raised = await platform.until(lambda: alerts_of(ids), timeout=60, what="the alert")
    kept = await platform.until(
        lambda: alerts_of({other["customer_id"]}), timeout=60, what="the bystander's alert"
    )

    erased = await platform.api["profile"].delete(f"/v1/profiles/{profile['customer_id']}")
    assert erased.status_code == 200, erased.text
    assert profile["customer_id"] in erased.json()["erased_customer_ids"]
    ids |= set(erased.json()["erased_customer_ids"])

    profile_api = platform.api["profile"]
    for cid in ids:
        for path in ("", "/timeline", "/merges"):
            response = await profile_api.get(f"/v1/profiles/{cid}{path}")
            assert response.status_code == 404, (path, response.text)
    for type_, value in journey.ids.items():
        assert (await platform.lookup(type_, value)).status_code == 404, type_
    assert (await platform.lookup("email", bystander.ids["email"])).status_code == 200

    async def alerts_gone() -> bool:
        return not await alerts_of(ids)

    await platform.until(alerts_gone, timeout=30, what="the erased customer's alerts removed")
    for alert in raised:
        response = await platform.api["alerting"].get(f"/v1/alerts/{alert['alert_id']}")
        assert response.status_code == 404, response.text
    for alert in kept:
        response = await platform.api["alerting"].get(f"/v1/alerts/{alert['alert_id']}")
        assert response.status_code == 200, response.text

    # The support team's stream, replayed from its start, no longer holds the erased alerts.
    gone = {a["alert_id"] for a in raised}
    kept_ids = {
        a["alert_id"] for a in kept if a["status"] != "suppressed" and "support" in a["receivers"]
    }
    assert kept_ids
    events = await platform.stream(
        "support",
        until=lambda evs: kept_ids <= {e["data"]["alert_id"] for e in evs},
        timeout=20,
    )
    assert kept_ids <= {e["data"]["alert_id"] for e in events}
    assert not [e for e in events if e["data"]["alert_id"] in gone]
    assert not [e for e in events if e["data"]["customer"]["customer_id"] in ids]
