"""GET /v1/decisions on the real broker and PostgreSQL: a customer resolved from touchpoints,
segments arriving through cx.scores, content chosen by the configured rules, and the
experiment exposure travelling back through cx.touchpoints to the same customer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import TopicPartition

from cxm_profile.api import create_app
from cxm_profile.config import ProfileSettings
from cxm_shared.events import ResolvedTouchpoint, ScoreSnapshot, Touchpoint, decode, encode
from cxm_shared.kafka import drop_topics, make_consumer, make_producer
from cxm_shared.topics import Topics

pytestmark = pytest.mark.integration

TOKEN = "decisions-test-token"
PARTITIONS = 2
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RULES = {
    "placements": {
        "home_banner": {
            "rules": [
                {
                    "name": "win_back",
                    "when": {"segments_any": ["vip_at_risk"]},
                    "content": {"id": "vip-winback", "title": "We miss you"},
                }
            ],
            "default": {"id": "seasonal"},
        }
    },
    "experiments": {
        "loyal_banner": {
            "placement": "home_banner",
            "eligible": {"segments_any": ["rfm:loyal"]},
            "variants": [
                {"name": "a", "weight": 1, "content": {"id": "banner-a"}},
                {"name": "b", "weight": 1, "content": {"id": "banner-b"}},
            ],
        }
    },
}


class Harness:
    def __init__(self, client: httpx.AsyncClient, topics: Topics, bootstrap: str) -> None:
        self.client = client
        self.topics = topics
        self.bootstrap = bootstrap
        self.producer = make_producer(bootstrap)

    async def decide(self, **params: str) -> httpx.Response:
        return await self.client.get("/v1/decisions", params=params, headers=AUTH)

    async def decide_until(self, check: Any, timeout: float = 30, **params: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = await self.decide(**params)
            assert response.status_code == 200, response.text
            body = response.json()
            if check(body):
                return body
            assert time.monotonic() < deadline, f"last decision: {body}"
            await asyncio.sleep(0.1)

    async def score(self, customer_id: str, segments: list[str], at: datetime) -> None:
        snapshot = ScoreSnapshot(customer_id=customer_id, updated_at=at, segments=segments)
        await self.producer.send_and_wait(
            self.topics.scores, key=customer_id.encode(), value=encode(snapshot)
        )


@pytest.fixture(scope="module")
async def harness(
    kafka_bootstrap: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    from cxm_shared.testing.infra import fresh_database

    rules_file = tmp_path_factory.mktemp("rules") / "decisions.yaml"
    rules_file.write_text(yaml.safe_dump(RULES))
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
    async with fresh_database(postgres_url, prefix="cxm_test") as db_url:
        settings = ProfileSettings(
            kafka_bootstrap=kafka_bootstrap,
            database_url=db_url,
            topic_prefix=topics.prefix,
            topic_partitions=PARTITIONS,
            api_tokens=TOKEN,
            data_dir=str(tmp_path_factory.mktemp("profile")),
            db_pool_size=4,
            decision_rules_file=Path(rules_file),
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://profile") as c:
                h = Harness(c, topics, kafka_bootstrap)
                await h.producer.start()
                try:
                    yield h
                finally:
                    await h.producer.stop()
        await drop_topics(kafka_bootstrap, prefix=topics.prefix)


async def known_customer(h: Harness, email: str) -> str:
    now = datetime.now(UTC)
    event = Touchpoint(
        event_id=f"ev-{uuid.uuid4().hex}",
        type="page_view",
        channel="web",
        occurred_at=now,
        received_at=now,
        source="test",
        identifiers={"email": email, "anonymous_id": f"anon-{uuid.uuid4().hex}"},
    )
    await h.producer.send_and_wait(h.topics.touchpoints, key=b"k", value=encode(event))
    deadline = time.monotonic() + 30
    while (
        r := await h.client.get(
            "/v1/profiles/lookup", params={"type": "email", "value": email}, headers=AUTH
        )
    ).status_code == 404:
        assert time.monotonic() < deadline, "the touchpoint was not resolved"
        await asyncio.sleep(0.1)
    return str(r.json()["customer_id"])


async def test_a_customer_in_a_segment_gets_that_segments_content(harness: Harness) -> None:
    email = f"vip.{uuid.uuid4().hex[:8]}@example.org"
    customer = await known_customer(harness, email)
    before = await harness.decide(type="email", value=email, placement="home_banner")
    assert before.json() | {"segments": []} == {
        "placement": "home_banner",
        "customer_id": customer,
        "segments": [],
        "content": {"id": "seasonal"},
        "source": "default",
        "rule": None,
        "experiment": None,
    }
    await harness.score(customer, ["vip_at_risk"], datetime.now(UTC))
    body = await harness.decide_until(
        lambda b: b["source"] == "rule",
        type="email",
        value=email.upper(),  # normalised like the lookup
        placement="home_banner",
    )
    assert body["content"] == {"id": "vip-winback", "title": "We miss you"}
    assert (body["rule"], body["segments"], body["customer_id"]) == (
        "win_back",
        ["vip_at_risk"],
        customer,
    )
    by_id = await harness.decide(customer_id=customer, placement="home_banner")
    assert by_id.json() == body


async def test_unknown_customers_get_the_default_and_bad_input_names_the_field(
    harness: Harness,
) -> None:
    unknown = await harness.decide(
        type="email", value="nobody.here@example.org", placement="home_banner"
    )
    assert unknown.status_code == 200
    assert unknown.json()["customer_id"] is None
    assert unknown.json()["content"] == {"id": "seasonal"}
    unknown_id = await harness.decide(customer_id=str(uuid.uuid4()), placement="home_banner")
    assert (unknown_id.status_code, unknown_id.json()["customer_id"]) == (200, None)
    cases = [
        ({"type": "email", "value": "not-an-email", "placement": "home_banner"}, "value"),
        ({"type": "shoe_size", "value": "42", "placement": "home_banner"}, "type"),
        ({"customer_id": "not-a-uuid", "placement": "home_banner"}, "customer_id"),
        ({"type": "email", "value": "a@example.org", "placement": "footer"}, "placement"),
        ({"placement": "home_banner"}, "type"),
        ({"type": "email", "placement": "home_banner"}, "value"),
        ({"type": "email", "value": "a@example.org"}, "placement"),
    ]
    for params, field in cases:
        response = await harness.decide(**params)
        assert response.status_code == 422, (params, response.text)
        assert field in str(response.json()["detail"][0]["loc"]), (params, response.text)
    no_token = await harness.client.get("/v1/decisions", params={"placement": "home_banner"})
    assert no_token.status_code == 401


async def test_an_experiment_assignment_is_logged_as_an_exposure_of_that_customer(
    harness: Harness,
) -> None:
    email = f"loyal.{uuid.uuid4().hex[:8]}@example.org"
    customer = await known_customer(harness, email)
    await harness.score(customer, ["rfm:loyal"], datetime.now(UTC) + timedelta(seconds=1))
    body = await harness.decide_until(
        lambda b: b["source"] == "experiment", type="email", value=email, placement="home_banner"
    )
    experiment = body["experiment"]
    assert experiment["id"] == "loyal_banner" and experiment["variant"] in ("a", "b")
    assert body["content"] == {"id": f"banner-{experiment['variant']}"}
    # Sticky: the same variant and the same exposure however often and however asked.
    for _ in range(5):
        again = (await harness.decide(customer_id=customer, placement="home_banner")).json()
        assert again["experiment"] == experiment

    exposure_id = experiment["exposure_event_id"]
    resolved = await read_until(harness, harness.topics.touchpoints_resolved, exposure_id)
    event = decode(ResolvedTouchpoint, resolved.value)
    assert event.customer_id == customer
    assert event.type == "experiment_exposure"
    assert event.context["experiment"] == {"id": "loyal_banner", "variant": experiment["variant"]}
    raw = await read_until(harness, harness.topics.touchpoints, exposure_id)
    assert email.encode() not in raw.value and email.split("@")[0].encode() not in raw.value
    sent = await read_to_end(harness, harness.topics.touchpoints)
    assert [r.offset for r in sent if decode(Touchpoint, r.value).event_id == exposure_id] == [
        raw.offset
    ]
    # It is on the customer's timeline like any other touchpoint.
    timeline = await harness.client.get(f"/v1/profiles/{customer}/timeline", headers=AUTH)
    assert exposure_id in [item["event_id"] for item in timeline.json()["items"]]


async def read_to_end(h: Harness, topic: str) -> list[Any]:
    """Every record on `topic` up to its current end."""
    consumer = make_consumer(h.bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(messages)
        return records
    finally:
        await consumer.stop()


async def read_until(h: Harness, topic: str, event_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in await read_to_end(h, topic):
            if (
                decode(
                    Touchpoint if topic == h.topics.touchpoints else ResolvedTouchpoint,
                    record.value,
                ).event_id
                == event_id
            ):
                return record
        await asyncio.sleep(0.2)
    raise AssertionError(f"{event_id} not on {topic}")
