"""Segment Tracking API compatibility, including the real Segment and RudderStack SDKs."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
import uvicorn
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

pytestmark = pytest.mark.integration


def mid() -> str:
    return f"m-{uuid.uuid4().hex}"


async def test_batch_merges_context_maps_identifiers_and_corrects_time(service, web_auth) -> None:
    received_before = datetime.now(UTC)
    client_now = received_before - timedelta(hours=2)  # the client's clock is 2 h behind
    happened = client_now - timedelta(minutes=5)
    track, ident = mid(), mid()
    body = {
        "batch": [
            {
                "type": "track",
                "messageId": track,
                "event": "Order Completed",
                "anonymousId": "anon-1",
                "userId": 42,
                "timestamp": happened.isoformat(),
                "properties": {
                    "order_id": "o-9",
                    "total": 99.5,
                    "currency": "USD",
                    "products": [{"product_id": "p1", "price": 99.5, "quantity": 1}],
                },
                "context": {
                    "device": {"id": "dev-7"},
                    "externalIds": [{"type": "loyalty_id", "id": "L-1", "collection": "users"}],
                    "locale": "en-US",
                },
            },
            {
                "type": "identify",
                "messageId": ident,
                "userId": "u-2",
                "traits": {"email": "a@example.com", "plan": "gold"},
                "integrations": {"Mixpanel": False},
            },
        ],
        "context": {"library": {"name": "custom"}, "locale": "ja-JP", "traits": {"region": "x"}},
        "integrations": {"All": True},
        "sentAt": client_now.isoformat(),
    }
    r = await service.client.post("/v1/batch", json=body, auth=web_auth)
    assert r.status_code == 200 and r.json()["success"] is True

    found = {t.event_id: t for _, t in await service.touchpoints()}
    tp = found[track]
    assert tp.type == "purchase" and tp.channel == "web" and tp.source == "web-site"
    assert tp.properties["amount"] == 99.5
    assert tp.properties["items"] == [{"sku": "p1", "price": 99.5, "quantity": 1}]
    assert tp.identifiers == {
        "anonymous_id": "anon-1",
        "user_id": "42",
        "device_id": "dev-7",
        "loyalty_id": "L-1",
    }
    assert tp.context["locale"] == "en-US"  # the message's own context wins
    assert tp.context["library"] == {"name": "custom"}  # batch-level context merged in
    assert tp.context["integrations"] == {"All": True}
    assert tp.traits == {"region": "x"}
    # occurred_at = timestamp + (receivedAt - sentAt): ~5 minutes before receipt.
    lag = tp.received_at - tp.occurred_at
    assert timedelta(minutes=4, seconds=50) < lag < timedelta(minutes=5, seconds=10)

    idt = found[ident]
    assert idt.type == "identify"
    assert idt.identifiers == {"user_id": "u-2", "email": "a@example.com"}
    assert idt.traits == {"region": "x", "email": "a@example.com", "plan": "gold"}
    assert idt.context["integrations"] == {"All": True, "Mixpanel": False}


async def test_skew_correction_is_bounded(service, web_auth) -> None:
    sent_at = datetime.now(UTC) - timedelta(days=30)  # a wildly wrong client clock
    m = mid()
    body = {
        "batch": [
            {
                "type": "track",
                "event": "Clicked",
                "messageId": m,
                "userId": "u",
                "timestamp": (sent_at - timedelta(minutes=1)).isoformat(),
            }
        ],
        "sentAt": sent_at.isoformat(),
    }
    assert (await service.client.post("/v1/batch", json=body, auth=web_auth)).status_code == 200
    (tp,) = [t for _, t in await service.touchpoints() if t.event_id == m]
    # Corrected by at most max_clock_skew (24 h), so it stays ~29 days back.
    assert tp.received_at - tp.occurred_at > timedelta(days=28)
    assert tp.type == "clicked"


@pytest.mark.parametrize("kind", ["track", "identify", "page", "screen", "group", "alias"])
async def test_single_routes_answer_success(service, kind) -> None:
    m = mid()
    msg = {
        "messageId": m,
        "userId": "u-1",
        "event": "Signed Up",
        "name": "Home",
        "groupId": "g-1",
        "previousId": "anon-9",
        "writeKey": "test-pos-key",
    }
    r = await service.client.post(f"/v1/{kind}", json=msg)  # writeKey in the body
    assert r.status_code == 200 and r.json() == {"success": True}
    (tp,) = [t for _, t in await service.touchpoints() if t.event_id == m]
    expected = {"track": "signed_up", "page": "page_view", "screen": "screen_view"}
    assert tp.type == expected.get(kind, kind)
    assert tp.channel == "store" and tp.source == "pos"


async def test_segment_retry_is_not_produced_twice(service, web_auth, recorded) -> None:
    m = mid()
    body = {"batch": [{"type": "track", "event": "x", "messageId": m, "anonymousId": "a"}]}
    for _ in range(2):
        r = await service.client.post("/v1/import", json=body, auth=web_auth)
        assert r.status_code == 200
        await recorded(m)
    assert r.json()["duplicate"] == 1
    assert len([t for _, t in await service.touchpoints() if t.event_id == m]) == 1


async def test_segment_errors(service, web_auth) -> None:
    no_key = await service.client.post("/v1/track", json={"messageId": "m", "userId": "u"})
    assert no_key.status_code == 401
    bad_key = await service.client.post("/v1/batch", json={"batch": [], "writeKey": "nope"})
    assert bad_key.status_code == 401
    no_ids = await service.client.post(
        "/v1/track", json={"messageId": mid(), "event": "x"}, auth=web_auth
    )
    assert no_ids.status_code == 400
    assert no_ids.json()["errors"][0]["loc"] == "identifiers"
    # Segment clients read "code" and "message" from error bodies.
    assert set(no_ids.json()) >= {"code", "message"}


@pytest_asyncio.fixture(scope="module")
async def base_url(service) -> AsyncIterator[str]:
    """The module's app served by uvicorn on an ephemeral port (its lifespan already runs)."""
    config = uvicorn.Config(
        service.app, host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


def drive_sdk(client, user: str) -> list[str]:
    """The six Segment calls through an SDK client; returns their message ids."""
    ids = []
    calls = [
        lambda: client.track(
            user, "Order Completed", {"order_id": "o1", "revenue": 10.0, "currency": "EUR"}
        ),
        lambda: client.identify(user, {"email": f"{user}@example.com", "age": 31}),
        lambda: client.page(user, "Docs", "Home", {"url": "https://example.com/"}),
        lambda: client.screen(user, "App", "Cart"),
        lambda: client.group(user, "group-1", {"name": "Acme"}),
        lambda: client.alias("anon-previous", user),
    ]
    for call in calls:
        ok, msg = call()
        assert ok, msg
        ids.append(msg["messageId"])
    client.flush()
    return ids


@pytest.mark.parametrize("gzip_on", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("sdk", ["segment", "rudder"])
async def test_real_sdks_deliver_to_kafka(service, base_url, sdk, gzip_on) -> None:
    errors: list[Exception] = []
    cls = SegmentClient if sdk == "segment" else RudderClient
    client = cls(
        write_key="test-web-key",
        host=base_url,
        gzip=gzip_on,
        sync_mode=True,
        max_retries=0,
        on_error=lambda exc, batch: errors.append(exc),
    )
    user = f"{sdk}-{uuid.uuid4().hex[:8]}"
    ids = await asyncio.to_thread(drive_sdk, client, user)
    assert not errors, errors
    found = {t.event_id: t for _, t in await service.touchpoints() if t.event_id in ids}
    assert set(found) == set(ids)
    types = [found[i].type for i in ids]
    assert types == ["purchase", "identify", "page_view", "screen_view", "group", "alias"]
    assert found[ids[1]].identifiers["email"] == f"{user}@example.com"
    assert all(t.identifiers["user_id"] == user for t in found.values())
    assert found[ids[5]].properties["previous_id"] == "anon-previous"


async def test_write_key_as_basic_user_only(service) -> None:
    token = base64.b64encode(b"test-web-key:").decode()
    r = await service.client.post(
        "/v1/page",
        json={"messageId": mid(), "anonymousId": "a"},
        headers={"authorization": f"Basic {token}"},
    )
    assert r.status_code == 200
    r = await service.client.post(
        "/v1/page", json={"messageId": mid(), "anonymousId": "a"}, auth=httpx.BasicAuth("x", "")
    )
    assert r.status_code == 401
