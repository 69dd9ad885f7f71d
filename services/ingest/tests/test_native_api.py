"""The native API against the real broker: every answer, and what lands on Kafka."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cxm_ingest.auth import RateLimiter

pytestmark = pytest.mark.integration


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"ev-{uuid.uuid4().hex}",
        "type": "survey_response",
        "touchpoint": "checkout",
        "occurred_at": "2026-03-01T09:30:00+09:00",
        "identifiers": {"user_id": "u-1", "email": "Someone@Example.com"},
        "traits": {"region": "kanto"},
        "properties": {"nps": 9, "comment": "fast delivery"},
        "context": {"locale": "ja-JP", "page": {"url": "https://shop.example/checkout"}},
    }
    base.update(overrides)
    return base


async def test_accepted_event_is_on_the_topic_exactly_as_normalised(service, web_auth) -> None:
    ev = event()
    before = datetime.now(UTC)
    r = await service.client.post("/v1/events", json=ev, auth=web_auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"event_id": ev["event_id"], "status": "accepted"}

    found = [(k, t) for k, t in await service.touchpoints() if t.event_id == ev["event_id"]]
    assert len(found) == 1
    key, tp = found[0]
    assert tp.type == "survey_response"
    assert tp.channel == "web"  # the write key's channel
    assert tp.source == "web-site"
    assert tp.touchpoint == "checkout"
    assert tp.occurred_at == datetime(2026, 3, 1, 0, 30, tzinfo=UTC)
    assert before <= tp.received_at <= datetime.now(UTC)
    assert tp.identifiers == ev["identifiers"]
    assert tp.traits == ev["traits"]
    assert tp.properties == ev["properties"]
    assert tp.context == ev["context"]
    # Keyed by the strongest identifier, hashed: no personal data in the key.
    assert b"u-1" not in key and len(key) == 32


async def test_same_user_keys_alike_across_devices(service, web_auth) -> None:
    a = event(identifiers={"user_id": "u-42", "device_id": "phone"})
    b = event(identifiers={"user_id": "u-42", "cookie_id": "pc"})
    for ev in (a, b):
        assert (await service.client.post("/v1/events", json=ev, auth=web_auth)).status_code == 200
    keys = {
        k for k, t in await service.touchpoints() if t.event_id in (a["event_id"], b["event_id"])
    }
    assert len(keys) == 1


async def test_retry_is_duplicate_and_produced_once(service, web_auth, recorded) -> None:
    ev = event()
    first = await service.client.post("/v1/events", json=ev, auth=web_auth)
    await recorded(ev["event_id"])
    retry = await service.client.post("/v1/events", json=ev, auth=web_auth)
    assert first.json()["status"] == "accepted"
    assert retry.status_code == 200 and retry.json()["status"] == "duplicate"
    found = [t for _, t in await service.touchpoints() if t.event_id == ev["event_id"]]
    assert len(found) == 1


async def test_schema_violation_is_400_with_field_path_and_not_produced(service, web_auth) -> None:
    ev = event(properties={"nps": 11})
    r = await service.client.post("/v1/events", json=ev, auth=web_auth)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "invalid_input"
    assert any(e["loc"] == "properties.nps" for e in body["errors"]), body
    assert all(t.event_id != ev["event_id"] for _, t in await service.touchpoints())


async def test_malformed_json_is_400(service, web_auth) -> None:
    r = await service.client.post(
        "/v1/events",
        content=b'{"event_id": ',
        headers={"content-type": "application/json"},
        auth=web_auth,
    )
    assert r.status_code == 400 and "JSON" in r.json()["message"]


async def test_custom_type_with_free_properties(service, web_auth) -> None:
    ev = event(type="loyalty_points_redeemed", properties={"points": 120, "any": {"x": [1]}})
    r = await service.client.post("/v1/events", json=ev, auth=web_auth)
    assert r.status_code == 200
    (tp,) = [t for _, t in await service.touchpoints() if t.event_id == ev["event_id"]]
    assert tp.properties == {"points": 120, "any": {"x": [1]}}


async def test_mixed_batch_gets_a_per_event_answer(service, web_auth) -> None:
    good = event()
    bad_nps = event(properties={"nps": "ten"})
    no_ids = event(identifiers={})
    purchase = event(
        type="purchase",
        channel="store",
        properties={
            "order_id": "o-1",
            "amount": 120.5,
            "currency": "JPY",
            "items": [{"sku": "s1", "category": "shoes", "brand": "b", "price": 120.5}],
        },
    )
    batch = [good, bad_nps, no_ids, purchase, good]
    r = await service.client.post("/v1/events/batch", json={"events": batch}, auth=web_auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 1, 2)
    statuses = [res["status"] for res in body["results"]]
    assert statuses == ["accepted", "rejected", "rejected", "accepted", "duplicate"]
    assert body["results"][1]["errors"][0]["loc"] == "events[1].properties.nps"
    assert body["results"][2]["errors"][0]["loc"] == "events[2].identifiers"
    on_topic = {t.event_id: t for _, t in await service.touchpoints()}
    assert good["event_id"] in on_topic and purchase["event_id"] in on_topic
    assert on_topic[purchase["event_id"]].channel == "store"
    assert bad_nps["event_id"] not in on_topic and no_ids["event_id"] not in on_topic


async def test_large_batch_lands_once_each_in_customer_order(service, web_auth) -> None:
    """A big batch goes to Kafka as per-partition record batches, single events one by one:
    either way every event lands once and one customer's events share a partition in order."""
    customers = [f"u-big-{uuid.uuid4().hex[:8]}-{c}" for c in range(12)]
    batch = [event(identifiers={"user_id": customers[i % 12]}) for i in range(60)]
    r = await service.client.post("/v1/events/batch", json={"events": batch}, auth=web_auth)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 60
    single = event(identifiers={"user_id": customers[0], "device_id": "kiosk"})
    r = await service.client.post("/v1/events", json=single, auth=web_auth)
    assert r.status_code == 200, r.text

    sent = [e["event_id"] for e in batch] + [single["event_id"]]
    landed = await service.placed()
    ours = [(p, t) for p, t in landed if t.event_id in set(sent)]
    assert sorted(t.event_id for _, t in ours) == sorted(sent)
    for customer in customers:
        mine = [(p, t.event_id) for p, t in ours if t.identifiers["user_id"] == customer]
        assert len({p for p, _ in mine}) == 1, customer
        expected = [e for e in sent if e in {i for _, i in mine}]
        assert [i for _, i in mine] == expected


async def test_all_rejected_batch_is_400(service, web_auth) -> None:
    r = await service.client.post(
        "/v1/events/batch", json={"events": [event(type="Bad Type")]}, auth=web_auth
    )
    assert r.status_code == 400
    assert r.json()["errors"][0]["loc"] == "events[0].type"


@pytest.mark.parametrize(
    "auth",
    [None, httpx.BasicAuth("wrong-key", ""), httpx.BasicAuth("", "")],
    ids=["missing", "invalid", "empty"],
)
async def test_missing_or_invalid_key_is_401(service, auth) -> None:
    r = await service.client.post("/v1/events", json=event(), auth=auth)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")


async def test_dev_key_works_in_local_mode(service) -> None:
    r = await service.client.post(
        "/v1/events", json=event(), headers={"authorization": "Bearer dev-write-key"}
    )
    assert r.status_code == 200


async def test_wrong_content_type_is_415(service, web_auth) -> None:
    r = await service.client.post(
        "/v1/events",
        content=b"event_id=1",
        auth=web_auth,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415
    r = await service.client.post(
        "/v1/events",
        content=b"{}",
        auth=web_auth,
        headers={"content-type": "application/json", "content-encoding": "br"},
    )
    assert r.status_code == 415


async def test_oversize_event_is_413(service, web_auth) -> None:
    ev = event(properties={"comment": "x" * 40_000, "nps": 3})
    r = await service.client.post("/v1/events", json=ev, auth=web_auth)
    assert r.status_code == 413


async def test_oversize_event_inside_batch_is_rejected_alone(service, web_auth) -> None:
    big = event(type="feedback", properties={"comment": "x" * 40_000})
    small = event()
    r = await service.client.post("/v1/events/batch", json={"events": [big, small]}, auth=web_auth)
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == ["rejected", "accepted"]
    assert r.json()["results"][0]["reason"] == "too_large"


async def test_too_many_events_is_413(service, web_auth) -> None:
    events = [{"event_id": str(i)} for i in range(2501)]
    r = await service.client.post("/v1/events/batch", json={"events": events}, auth=web_auth)
    assert r.status_code == 413 and "2500" in r.json()["message"]


async def test_gzip_body_is_accepted_and_limit_applies_after_decompression(
    service, web_auth
) -> None:
    ev = event()
    body = gzip.compress(httpx.Request("POST", "/", json={"events": [ev]}).content)
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    r = await service.client.post("/v1/events/batch", content=body, headers=headers, auth=web_auth)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    # 600 KB of JSON whitespace compresses to < 1 KB; the limit counts decompressed bytes.
    padded = gzip.compress(b'{"events": [' + b" " * 600_000 + b"]}")
    assert len(padded) < 2_000
    r = await service.client.post(
        "/v1/events/batch", content=padded, headers=headers, auth=web_auth
    )
    assert r.status_code == 413


async def test_rate_limit_is_429_with_retry_after(service, web_auth) -> None:
    intake = service.app.state.intake
    saved = intake.limiter
    intake.limiter = RateLimiter(rate=1, burst=3)
    try:
        codes = [
            (await service.client.post("/v1/events", json=event(), auth=web_auth)).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 200]
        r = await service.client.post("/v1/events", json=event(), auth=web_auth)
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        # Another source has its own bucket.
        r = await service.client.post(
            "/v1/events", json=event(), auth=httpx.BasicAuth("test-pos-key", "")
        )
        assert r.status_code == 200
    finally:
        intake.limiter = saved


async def test_occurred_at_needs_an_offset_and_a_sane_range(service, web_auth) -> None:
    naive = await service.client.post(
        "/v1/events", json=event(occurred_at="2026-03-01T09:30:00"), auth=web_auth
    )
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    ahead = await service.client.post("/v1/events", json=event(occurred_at=future), auth=web_auth)
    assert naive.status_code == 400 and ahead.status_code == 400
    assert naive.json()["errors"][0]["loc"] == "occurred_at"


async def test_metrics_count_by_source_channel_and_outcome(service, web_auth) -> None:
    await service.client.post("/v1/events", json=event(), auth=web_auth)
    text = (await service.client.get("/metrics")).text
    assert (
        'cxm_ingest_events_total{channel="web",outcome="accepted",reason="",source="web-site"}'
        in text
    )
    assert 'cxm_ingest_events_total{channel="web",outcome="rejected",reason="schema"' in text
    assert "cxm_ingest_kafka_produce_seconds_bucket" in text
    assert 'cxm_ingest_request_seconds_bucket{le="0.001",route="/v1/events",status="200"}' in text
