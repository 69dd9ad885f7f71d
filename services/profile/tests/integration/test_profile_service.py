"""The whole service on the real broker and PostgreSQL: Touchpoint messages on Kafka, through
the faust agent into the graph, out on the resolved/merges topics, and read back via the API.

One app for the module (starting faust costs seconds); tests use their own identifier values.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cxm_profile.api import create_app
from cxm_profile.config import ProfileSettings
from cxm_shared.events import (
    CustomerErased,
    IdentityChange,
    ResolvedTouchpoint,
    ScoreSnapshot,
    Touchpoint,
    decode,
    encode,
)
from cxm_shared.kafka import make_consumer, make_producer
from cxm_shared.testing.infra import fresh_database
from cxm_shared.topics import Topics

pytestmark = pytest.mark.integration

TOKEN = "profile-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
START = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


class Harness:
    def __init__(
        self, app: Any, client: httpx.AsyncClient, topics: Topics, bootstrap: str, db_url: str
    ):
        self.app = app
        self.client = client
        self.topics = topics
        self.bootstrap = bootstrap
        self.db_url = db_url
        self.producer = make_producer(bootstrap)
        self.tag = ""

    async def send(self, *touchpoints: Touchpoint, key: bytes | None = None) -> None:
        for tp in touchpoints:
            await self.producer.send_and_wait(
                self.topics.touchpoints, key=key or tp.event_id.encode(), value=encode(tp)
            )

    async def wait_processed(self, event_ids: list[str], timeout: float = 30) -> None:
        engine = create_async_engine(self.db_url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                async with engine.connect() as conn:
                    done = (
                        await conn.execute(
                            text(
                                "SELECT count(*) FROM profile.processed_events"
                                " WHERE event_id = ANY(CAST(:e AS text[]))"
                            ),
                            {"e": event_ids},
                        )
                    ).scalar_one()
                if done == len(set(event_ids)):
                    return
                assert time.monotonic() < deadline, f"{done}/{len(event_ids)} events processed"
                await asyncio.sleep(0.1)
        finally:
            await engine.dispose()

    async def lookup(self, type_: str, value: str) -> httpx.Response:
        return await self.client.get(
            "/v1/profiles/lookup", params={"type": type_, "value": value}, headers=AUTH
        )

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()

    async def post(self, path: str, **body: Any) -> Any:
        response = await self.client.post(path, json=body or None, headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()


def touchpoint(
    event_id: str, *, channel: str, minute: int, type: str = "page_view", **fields: Any
) -> Touchpoint:
    at = START + timedelta(minutes=minute)
    identifiers = {k: v for k, v in fields.items() if k not in ("touchpoint", "traits")}
    return Touchpoint(
        event_id=event_id,
        type=type,
        channel=channel,
        touchpoint=fields.get("touchpoint"),
        occurred_at=at,
        received_at=at,
        source="test",
        identifiers=identifiers,
        traits=fields.get("traits", {}),
    )


@pytest.fixture(scope="module")
async def module_db(postgres_url: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_url, prefix="cxm_test") as url:
        yield url


@pytest.fixture(scope="module")
async def harness(
    kafka_bootstrap: str, module_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
    settings = ProfileSettings(
        kafka_bootstrap=kafka_bootstrap,
        database_url=module_db,
        topic_prefix=topics.prefix,
        topic_partitions=2,
        api_tokens=TOKEN,
        data_dir=str(tmp_path_factory.mktemp("profile")),
        db_pool_size=4,
        outbox_interval_seconds=0.2,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://profile") as client:
            h = Harness(app, client, topics, kafka_bootstrap, module_db)
            await h.producer.start()
            try:
                yield h
            finally:
                await h.producer.stop()


async def read_topic(
    bootstrap: str, topic: str, *, until: Callable[[list[Any]], bool], timeout: float = 20
) -> list[Any]:
    consumer = make_consumer(bootstrap, topic, group_id=None)
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(records):
            assert time.monotonic() < deadline, f"{len(records)} records on {topic}"
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(messages)
    finally:
        await consumer.stop()
    return records


async def test_api_refuses_requests_without_a_valid_token(harness: Harness) -> None:
    assert (await harness.client.get("/v1/quarantine")).status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert (await harness.client.get("/v1/quarantine", headers=bad)).status_code == 401
    response = await harness.client.get(
        "/v1/profiles/lookup", params={"type": "email", "value": "not-an-email"}, headers=AUTH
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "value"]


async def test_web_app_store_hotline_journey_is_one_customer(harness: Harness) -> None:
    run = uuid.uuid4().hex[:8]
    email = f"taro.{run}@example.org"
    events = [
        touchpoint(f"{run}-1", channel="web", minute=0, anonymous_id=f"anon-{run}"),
        touchpoint(
            f"{run}-2",
            channel="app",
            minute=1,
            anonymous_id=f"anon-{run}",
            email=email.upper(),
            traits={"region": "Tokyo"},
        ),
        touchpoint(
            f"{run}-3",
            channel="store",
            minute=2,
            type="purchase",
            email=email,
            loyalty_id=f"L-{run}",
            traits={"region": "Osaka"},
        ),
        touchpoint(
            f"{run}-4",
            channel="call_center",
            minute=3,
            type="support_contact",
            touchpoint="hotline",
            loyalty_id=f"L-{run}",
            phone="090-1234-5678",
        ),
    ]
    # The last event twice and the first one again late: redelivery changes nothing.
    await harness.send(*events, events[3], events[0])
    await harness.wait_processed([e.event_id for e in events])

    by_phone = await harness.lookup("phone", "+81 90 1234 5678")
    assert by_phone.status_code == 200, by_phone.text
    profile = by_phone.json()
    for type_, value in (
        ("email", email),
        ("loyalty_id", f"L-{run}"),
        ("anonymous_id", f"anon-{run}"),
    ):
        assert (await harness.lookup(type_, value)).json()["customer_id"] == profile["customer_id"]
    assert {i["type"] for i in profile["identifiers"]} == {
        "anonymous_id",
        "email",
        "loyalty_id",
        "phone",
    }
    assert all(email not in i["masked"] for i in profile["identifiers"])
    assert profile["traits"]["region"]["value"] == "Osaka"  # latest wins, source recorded
    assert profile["traits"]["region"]["channel"] == "store"

    timeline = await harness.get(f"/v1/profiles/{profile['customer_id']}/timeline", limit=3)
    rest = await harness.get(
        f"/v1/profiles/{profile['customer_id']}/timeline", limit=3, cursor=timeline["next_cursor"]
    )
    ids = [i["event_id"] for i in timeline["items"] + rest["items"]]
    assert ids == [e.event_id for e in reversed(events)]
    assert rest["next_cursor"] is None

    # Every resolved message is keyed by the one customer; redeliveries re-publish at most.
    customer = profile["customer_id"]
    wanted = {e.event_id for e in events}

    def all_seen(records: list[Any]) -> bool:
        seen = {decode(ResolvedTouchpoint, r.value).event_id for r in records}
        return wanted <= seen

    records = await read_topic(
        harness.bootstrap, harness.topics.touchpoints_resolved, until=all_seen
    )
    mine = [decode(ResolvedTouchpoint, r.value) for r in records]
    mine = [m for m in mine if m.event_id in wanted]
    final = {m.event_id: m.customer_id for m in mine}
    assert final[events[3].event_id] == customer
    assert all(r.key.decode() == decode(ResolvedTouchpoint, r.value).customer_id for r in records)


async def test_shared_tablet_and_two_user_ids_are_quarantined_then_approved(
    harness: Harness,
) -> None:
    run = uuid.uuid4().hex[:8]
    first = touchpoint(
        f"{run}-a", channel="store", minute=0, device_id=f"tab-{run}", user_id=f"u1-{run}"
    )
    second = touchpoint(
        f"{run}-b", channel="store", minute=1, device_id=f"tab-{run}", user_id=f"u2-{run}"
    )
    await harness.send(first, second)
    await harness.wait_processed([first.event_id, second.event_id])
    one = (await harness.lookup("user_id", f"u1-{run}")).json()["customer_id"]
    two = (await harness.lookup("user_id", f"u2-{run}")).json()["customer_id"]
    assert one != two

    pending = (await harness.get("/v1/quarantine"))["items"]
    (item,) = [q for q in pending if q["event_id"] == second.event_id]
    assert {item["customer_id"], item["other_customer_id"]} == {one, two}
    assert "conflicting_user_id" in item["reasons"]

    decision = await harness.post(f"/v1/quarantine/{item['quarantine_id']}/approve")
    assert decision["status"] == "approved" and decision["merge_id"]
    assert (await harness.lookup("user_id", f"u2-{run}")).json()["customer_id"] == decision[
        "customer_id"
    ]
    assert (await harness.lookup("user_id", f"u1-{run}")).json()["customer_id"] == decision[
        "customer_id"
    ]
    again = await harness.client.post(
        f"/v1/quarantine/{item['quarantine_id']}/approve", headers=AUTH
    )
    assert again.status_code == 409

    records = await read_topic(
        harness.bootstrap,
        harness.topics.identity_merges,
        until=lambda rs: any(
            decode(IdentityChange, r.value).merge_id == decision["merge_id"] for r in rs
        ),
    )
    assert records


async def test_unmerge_restores_both_customers_and_their_timelines(harness: Harness) -> None:
    run = uuid.uuid4().hex[:8]
    shop = touchpoint(f"{run}-1", channel="store", minute=0, loyalty_id=f"L-{run}")
    web = touchpoint(f"{run}-2", channel="web", minute=1, email=f"x{run}@example.org")
    web2 = touchpoint(f"{run}-3", channel="web", minute=2, email=f"x{run}@example.org")
    join = touchpoint(
        f"{run}-4", channel="app", minute=3, loyalty_id=f"L-{run}", email=f"x{run}@example.org"
    )
    await harness.send(shop, web, web2, join)
    await harness.wait_processed([shop.event_id, web.event_id, web2.event_id, join.event_id])
    merged = (await harness.lookup("email", f"x{run}@example.org")).json()
    assert len(merged["merged_ids"]) == 1
    assert len((await harness.get(f"/v1/profiles/{merged['customer_id']}/timeline"))["items"]) == 4
    why = await harness.get(f"/v1/profiles/{merged['customer_id']}/merges")
    (merge,) = why["merges"]
    assert merge["rule"] == "strong_identifier_match" and merge["event_id"] == join.event_id
    assert {link["identifier"]["type"] for link in why["links"]} == {"loyalty_id", "email"}
    # The merged-away id resolves to the winner.
    loser = merge["loser_id"]
    assert (await harness.get(f"/v1/profiles/{loser}"))["customer_id"] == merge["winner_id"]

    result = await harness.post(f"/v1/merges/{merge['merge_id']}/unmerge", reason="agent error")
    assert result["restored_customer_id"] == loser
    by_loyalty = (await harness.lookup("loyalty_id", f"L-{run}")).json()
    by_email = (await harness.lookup("email", f"x{run}@example.org")).json()
    assert by_loyalty["customer_id"] != by_email["customer_id"]
    t_loyalty = await harness.get(f"/v1/profiles/{by_loyalty['customer_id']}/timeline")
    t_email = await harness.get(f"/v1/profiles/{by_email['customer_id']}/timeline")
    assert {i["event_id"] for i in t_email["items"]} == {web.event_id, web2.event_id}
    # The joining event's best identifier is the loyalty card: it stays on that side.
    assert {i["event_id"] for i in t_loyalty["items"]} == {shop.event_id, join.event_id}
    again = await harness.client.post(f"/v1/merges/{merge['merge_id']}/unmerge", headers=AUTH)
    assert again.status_code == 409
    # A person separated them: the same evidence does not merge them again automatically.
    rejoin = touchpoint(
        f"{run}-5", channel="app", minute=4, loyalty_id=f"L-{run}", email=f"x{run}@example.org"
    )
    await harness.send(rejoin)
    await harness.wait_processed([rejoin.event_id])
    assert (await harness.lookup("email", f"x{run}@example.org")).json()["customer_id"] == by_email[
        "customer_id"
    ]


async def test_erase_leaves_no_row_naming_the_customer_and_suppresses_recreation(
    harness: Harness,
) -> None:
    run = uuid.uuid4().hex[:8]
    email = f"erase.{run}@example.org"
    events = [
        touchpoint(f"{run}-1", channel="web", minute=0, anonymous_id=f"anon-{run}"),
        touchpoint(
            f"{run}-2",
            channel="app",
            minute=1,
            anonymous_id=f"anon-{run}",
            email=email,
            traits={"name_kana": "タロウ"},
        ),
        touchpoint(
            f"{run}-3", channel="store", minute=2, device_id=f"tab-{run}", user_id=f"ua-{run}"
        ),
        touchpoint(
            f"{run}-4",
            channel="store",
            minute=3,
            device_id=f"tab-{run}",
            user_id=f"ub-{run}",
            email=email,
        ),
    ]
    await harness.send(*events)
    await harness.wait_processed([e.event_id for e in events])
    profile = (await harness.lookup("email", email)).json()
    customer = profile["customer_id"]
    ids = {customer, *profile["merged_ids"]}
    score = ScoreSnapshot(customer_id=customer, updated_at=START, segments=["vip"])
    await harness.producer.send_and_wait(
        harness.topics.scores, key=customer.encode(), value=encode(score)
    )
    deadline = time.monotonic() + 20
    while not (await harness.get(f"/v1/profiles/{customer}"))["scores"]:
        assert time.monotonic() < deadline, "score snapshot not stored"
        await asyncio.sleep(0.1)
    assert (await harness.get(f"/v1/profiles/{customer}"))["segments"] == ["vip"]

    response = await harness.client.delete(f"/v1/profiles/{customer}", headers=AUTH)
    assert response.status_code == 200, response.text
    erased = set(response.json()["erased_customer_ids"])
    assert erased == ids

    engine = create_async_engine(harness.db_url)
    try:
        async with engine.connect() as conn:
            tables = [
                r[0]
                for r in await conn.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema = 'profile'"
                    )
                )
            ]
            assert "suppressions" in tables and len(tables) >= 10
            for table in tables:
                for needle in [*ids, email, f"{run}-2", f"anon-{run}"]:
                    hits = (
                        await conn.execute(
                            text(f'SELECT count(*) FROM profile."{table}" t WHERE t::text LIKE :n'),
                            {"n": f"%{needle}%"},
                        )
                    ).scalar_one()
                    assert hits == 0, f"{table} still names the erased customer"
    finally:
        await engine.dispose()
    assert (await harness.lookup("email", email)).status_code == 404

    records = await read_topic(
        harness.bootstrap,
        harness.topics.erasures,
        until=lambda rs: ids <= {decode(CustomerErased, r.value).customer_id for r in rs},
    )
    assert records
    tombstones = await read_topic(
        harness.bootstrap,
        harness.topics.scores,
        until=lambda rs: any(r.key == customer.encode() and r.value is None for r in rs),
    )
    assert tombstones

    # A later event with the erased email does not bring the customer back.
    later = touchpoint(f"{run}-5", channel="web", minute=9, email=email)
    marker = touchpoint(f"{run}-6", channel="web", minute=9, anonymous_id=f"marker-{run}")
    # Same key, same partition: once the marker is processed, so is the erased email's event.
    await harness.send(later, marker, key=run.encode())
    await harness.wait_processed([marker.event_id])
    assert (await harness.lookup("email", email)).status_code == 404


async def test_poison_message_goes_to_the_dead_letter_topic(harness: Harness) -> None:
    await harness.producer.send_and_wait(harness.topics.touchpoints, key=b"p", value=b"{not json")
    records = await read_topic(
        harness.bootstrap,
        Topics.dlq(harness.topics.touchpoints),
        until=lambda rs: any(r.value == b"{not json" for r in rs),
    )
    (poison,) = [r for r in records if r.value == b"{not json"]
    assert dict(poison.headers)["cxm-service"] == b"profile"


class BrokerDown:
    """A producer whose every send fails as if the broker were unreachable."""

    def __init__(self) -> None:
        self.attempts = 0

    async def send(self, topic: str, **kwargs: Any) -> Any:
        self.attempts += 1
        raise KafkaConnectionError("simulated: broker unreachable")


async def test_erasure_is_announced_after_kafka_fails_at_send_time(harness: Harness) -> None:
    run = uuid.uuid4().hex[:8]
    event = touchpoint(f"{run}-1", channel="web", minute=0, email=f"gone.{run}@example.org")
    await harness.send(event)
    await harness.wait_processed([event.event_id])
    customer = (await harness.lookup("email", f"gone.{run}@example.org")).json()["customer_id"]

    relay = harness.app.state.outbox
    real, down = relay.producer, BrokerDown()
    relay.producer = down
    try:
        response = await harness.client.delete(f"/v1/profiles/{customer}", headers=AUTH)
        assert response.status_code == 200, response.text
        # Committed, not yet announced: the relay keeps retrying while the broker is down.
        deadline = time.monotonic() + 10
        while down.attempts < 2:
            assert time.monotonic() < deadline, "the relay did not retry"
            await asyncio.sleep(0.05)
    finally:
        relay.producer = real
    again = await harness.client.delete(f"/v1/profiles/{customer}", headers=AUTH)
    assert again.status_code == 404

    records = await read_topic(
        harness.bootstrap,
        harness.topics.erasures,
        until=lambda rs: any(decode(CustomerErased, r.value).customer_id == customer for r in rs),
    )
    assert [r.key for r in records if r.key == customer.encode()]
    engine = create_async_engine(harness.db_url)
    try:
        deadline = time.monotonic() + 10
        while True:
            async with engine.connect() as conn:
                left = (
                    await conn.execute(text("SELECT count(*) FROM profile.outbox"))
                ).scalar_one()
            if left == 0:
                break
            assert time.monotonic() < deadline, f"{left} announcements still pending"
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
