"""CX insights on the real broker: simulated journeys with a planted drop-off step, a planted
key driver (a failed delivery lowers the next NPS by 3 points, a long hotline wait by 1.5) and
a planted winning variant go through the scoring worker; the insights API recovers each.

The generator is deterministic (seeded) and keeps the truth it planted: exact counts for the
funnel, the true effects for the drivers and the true conversion rates per variant."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cxm_shared.events import CustomerErased, ResolvedTouchpoint, encode
from cxm_shared.kafka import drop_topics, make_producer
from cxm_shared.topics import Topics

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
AUTH = {"Authorization": "Bearer dev-api-token"}
CUSTOMERS = 1000
STEPS = ("product_page", "cart", "checkout", "payment", "delivery", "survey")
# planted: the funnel's transition probabilities (checkout -> payment loses the most) ...
P_CART, P_PAYMENT, P_DELIVERY, P_SURVEY = 0.8, 0.45, 0.95, 0.85
# ... the banner variant's effect on checkout (= conversion: a purchase after exposure) ...
P_CHECKOUT = {"A": 0.5, "B": 0.75}
# ... and the drivers' effects on the next NPS answer
NPS_BASE, FAILED_DELIVERY_EFFECT, LONG_WAIT_EFFECT, NPS_SD = 7.0, -3.0, -1.5, 1.0
P_FAILED, P_CONTACT, P_LONG_WAIT = 0.3, 0.3, 0.5


@dataclass
class Truth:
    steps: list[int] = field(default_factory=lambda: [0] * len(STEPS))
    unhappy_steps: list[int] = field(default_factory=lambda: [0] * len(STEPS))
    exposed: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})
    converted: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})
    answers: int = 0
    completed: list[str] = field(default_factory=list)


class Journey:
    def __init__(self, i: int) -> None:
        self.i = i
        self.customer = f"ins-{i}"
        self.events: list[ResolvedTouchpoint] = []

    def emit(self, type_: str, touchpoint: str, **props: Any) -> None:
        n = len(self.events)
        self.events.append(
            ResolvedTouchpoint(
                event_id=f"{self.customer}-{n}",
                type=type_,
                channel="web",
                touchpoint=touchpoint,
                occurred_at=T0 + timedelta(days=self.i % 30, minutes=n),
                received_at=T0,
                source="test",
                identifiers={"user_id": self.customer},
                properties=props,
                customer_id=self.customer,
            )
        )


def journeys(
    seed: int = 10, customers: int = CUSTOMERS
) -> tuple[list[tuple[str, list[ResolvedTouchpoint]]], Truth]:
    rng = random.Random(seed)
    truth = Truth()
    out = []
    for i in range(customers):
        journey = Journey(i)
        customer, events, emit = journey.customer, journey.events, journey.emit
        variant = "AB"[i % 2]
        truth.exposed[variant] += 1
        emit("experiment_exposure", "home", experiment_id="home_banner", variant=variant)
        emit("page_view", "product_page", url="https://shop.example/p/1")
        reached = 1
        failed = False
        if rng.random() < P_CART:
            emit("cart_abandon", "cart")
            reached = 2
            if rng.random() < P_CHECKOUT[variant]:
                emit("purchase", "checkout", order_id=f"o-{i}", amount=50.0, items=[])
                truth.converted[variant] += 1
                reached = 3
                if rng.random() < P_PAYMENT:
                    emit("payment", "payment", status="succeeded")
                    reached = 4
                    if rng.random() < P_DELIVERY:
                        failed = rng.random() < P_FAILED
                        emit("delivery", "delivery", status="failed" if failed else "delivered")
                        reached = 5
        long_wait = False
        if rng.random() < P_CONTACT:
            long_wait = rng.random() < P_LONG_WAIT
            wait = 1200 if long_wait else 90
            emit("support_contact", "hotline", reason="question", wait_seconds=wait, resolved=True)
        nps = None
        if rng.random() < P_SURVEY:
            mean = NPS_BASE + FAILED_DELIVERY_EFFECT * failed + LONG_WAIT_EFFECT * long_wait
            nps = min(10, max(0, round(rng.gauss(mean, NPS_SD))))
            emit("survey_response", "nps_survey", nps=nps)
            truth.answers += 1
            if reached == 5:
                reached = 6
        for step in range(reached):
            truth.steps[step] += 1
            if nps is not None and nps <= 6:  # the default "unhappy" segment: a detractor
                truth.unhappy_steps[step] += 1
        if reached == len(STEPS):
            truth.completed.append(customer)
        out.append((customer, events))
    return out, truth


async def publish_all(bootstrap: str, topic: str, data: list[tuple[str, list[Any]]]) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        futures = []
        for customer, events in data:
            for event in events:
                futures.append(await producer.send(topic, encode(event), key=customer.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def wait_for(client: httpx.AsyncClient, path: str, done: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(path, headers=AUTH)
        body = response.json() if response.status_code == 200 else None
        if body is not None and done(body):
            return body
        assert time.monotonic() < deadline, f"{path}: not there in time: {response.text[:800]}"
        await asyncio.sleep(0.3)


@pytest.fixture
async def own_topics(kafka_bootstrap: str, topics: Topics) -> AsyncIterator[Topics]:
    """The test's topics (and the worker's internal ones), deleted afterwards."""
    yield topics
    await drop_topics(kafka_bootstrap, prefix=topics.prefix)


async def test_insights_recover_planted_drop_off_driver_and_winner(
    scoring_settings, run_scoring, kafka_bootstrap: str, own_topics: Topics
) -> None:
    topics = own_topics
    settings = scoring_settings.model_copy(update={"insights_publish_interval_s": 0.3})
    data, truth = journeys()
    async with run_scoring(settings) as app:
        started = time.monotonic()
        await publish_all(kafka_bootstrap, topics.touchpoints_resolved, data)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://scoring") as client:
            # -- journey drop-off: exact counts, the planted step is the biggest drop-off
            funnel = await wait_for(
                client,
                "/v1/insights/funnels/purchase_journey",
                lambda b: [s["customers"] for s in b["steps"]] == truth.steps,
            )
            elapsed = time.monotonic() - started
            assert funnel["biggest_drop_off"]["from_step"] == "checkout"
            assert funnel["biggest_drop_off"]["to_step"] == "payment"
            payment = funnel["steps"][3]
            assert payment["drop_off"] == pytest.approx(1 - truth.steps[3] / truth.steps[2])
            unhappy = {b["segment"]: b for b in funnel["by_segment"]}["unhappy"]
            assert [s["customers"] for s in unhappy["steps"]] == truth.unhappy_steps
            one = await client.get(
                "/v1/insights/funnels/purchase_journey", params={"segment": "unhappy"}, headers=AUTH
            )
            assert [s["customers"] for s in one.json()["steps"]] == truth.unhappy_steps

            # -- key drivers: both planted effects inside their 95% intervals, significant,
            # ranked by size; drivers that did not happen are not estimated
            drivers = await wait_for(
                client,
                "/v1/insights/drivers?metric=nps",
                lambda b: b["observations"] == truth.answers,
            )
            ranked = {d["driver"]: d for d in drivers["drivers"]}
            assert [d["driver"] for d in drivers["drivers"]][:2] == [
                "failed_delivery",
                "long_hotline_wait",
            ]
            for name, planted in (
                ("failed_delivery", FAILED_DELIVERY_EFFECT),
                ("long_hotline_wait", LONG_WAIT_EFFECT),
            ):
                d = ranked[name]
                assert d["ci_low"] < planted < d["ci_high"], d
                assert d["significant"] and d["p_value"] < 0.001, d
            assert "return" in drivers["not_estimable"]
            assert drivers["baseline"] == pytest.approx(NPS_BASE, abs=0.3)

            # -- experiment: B converts better, significantly, and is the winner
            report = await wait_for(
                client,
                "/v1/insights/experiments/home_banner",
                lambda b: {v["variant"]: v["exposed"] for v in b["variants"]} == truth.exposed,
            )
            variants = {v["variant"]: v for v in report["variants"]}
            for name in "AB":
                assert variants[name]["converted"] == truth.converted[name]
            conversion = next(c for c in report["comparisons"] if c["metric"] == "conversion_rate")
            planted = P_CHECKOUT["B"] * P_CART - P_CHECKOUT["A"] * P_CART
            assert conversion["baseline_variant"] == "A" and conversion["variant"] == "B"
            assert conversion["ci_low"] < planted < conversion["ci_high"], conversion
            assert conversion["significant"] and conversion["n"] == truth.exposed["B"]
            assert report["winner"] == "B"
            listing = (await client.get("/v1/insights/experiments", headers=AUTH)).json()
            assert listing["experiments"][0]["winner"] == "B"

            # -- bad requests name the field; no token, no answer
            bad = await client.get("/v1/insights/drivers?metric=ces", headers=AUTH)
            assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "metric"]
            missing = await client.get("/v1/insights/funnels/nope", headers=AUTH)
            assert missing.status_code == 404 and missing.json()["detail"].startswith("funnel:")
            seg = await client.get(
                "/v1/insights/experiments/home_banner", params={"segment": "x"}, headers=AUTH
            )
            assert seg.status_code == 404 and seg.json()["detail"].startswith("segment:")
            assert (await client.get("/v1/insights/funnels")).status_code == 401

            # -- erasure takes the customer out of the statistics
            gone = truth.completed[0]
            erased = CustomerErased(customer_id=gone, request_id="r1", occurred_at=T0)
            await publish_all(kafka_bootstrap, topics.erasures, [(gone, [erased])])
            expected = [n - 1 for n in truth.steps]
            await wait_for(
                client,
                "/v1/insights/funnels/purchase_journey",
                lambda b: [s["customers"] for s in b["steps"]] == expected,
            )
            metrics = (await client.get("/metrics")).text
            effects = [
                line
                for line in metrics.splitlines()
                if line.startswith("cxm_scoring_insights_driver_effect{")
            ]
            assert any('driver="failed_delivery"' in line for line in effects), effects
    events = sum(len(e) for _, e in data)
    print(f"insights: {events} events to all three read-outs in {elapsed:.1f} s")


async def test_every_worker_answers_for_the_whole_base(
    scoring_settings, run_scoring, kafka_bootstrap: str, own_topics: Topics
) -> None:
    """Two workers share the partitions; each one's API counts every customer."""
    settings = scoring_settings.model_copy(update={"insights_publish_interval_s": 0.3})
    data, truth = journeys(seed=11, customers=300)
    async with run_scoring(settings) as first, run_scoring(settings) as second:
        await publish_all(kafka_bootstrap, own_topics.touchpoints_resolved, data)
        for app in (first, second):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
                await wait_for(
                    client,
                    "/v1/insights/funnels/purchase_journey",
                    lambda b: [s["customers"] for s in b["steps"]] == truth.steps,
                )
                drivers = await wait_for(
                    client, "/v1/insights/drivers", lambda b: b["observations"] == truth.answers
                )
                assert drivers["drivers"][0]["driver"] == "failed_delivery"
        resolved = own_topics.touchpoints_resolved
        owned = [
            {tp.partition for tp in app.state.faust.consumer.assignment() if tp.topic == resolved}
            for app in (first, second)
        ]
    # the partitions were split: each worker answered with the other's customers too
    assert all(owned) and not owned[0] & owned[1], owned
