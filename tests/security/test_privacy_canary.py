"""Privacy canary: unique e-mail addresses, phone numbers, names and comments go through
every path of the running platform, then every place personal data is not meant to be is
searched for them. 0 raw occurrences.

Paths: accepted events (native and Segment), events refused with a 4xx, lookups and reads
that fail, poison messages that end in the dead-letter topics, negative feedback that
raises alerts (webhooks delivered).

Searched: every service's log output, every ``/metrics`` label, the reason headers of every
dead-letter message (a dead-letter value is the source message's bytes, unchanged: checked
byte for byte, so a DLQ never adds anything), every error response body, and the alerts (API
and delivered webhooks), whose journey may show masked identifiers only.

Meant to hold them, so not searched: the raw touchpoints topic (and the resolved copy the
scorer reads), the profile database's timeline and traits, and what the profile API serves
from them to an authenticated caller.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from cxm_shared.kafka import make_consumer, make_producer
from cxm_shared.topics import Topics

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


class Canary:
    """Personal data no other test, and nothing in the code, can contain by chance."""

    def __init__(self, rng: random.Random) -> None:
        tag = f"{rng.getrandbits(40):010x}"
        self.tag = f"cnry{tag}"
        self.email = f"kanari.{tag}@example.com"
        self.phone_digits = f"90{rng.randrange(10**7, 10**8)}"
        self.phone = f"+81 {self.phone_digits[:2]}-{self.phone_digits[2:6]}-{self.phone_digits[6:]}"
        self.name = f"Hanako Kanari{tag.upper()}"
        self.comment = (
            f"Terrible delivery, the parcel arrived broken and support was rude. Ref {self.tag}"
        )
        self.user_id = f"user-{self.tag}"

    def needles(self) -> dict[str, str]:
        """What must not appear: each value as sent, and the parts that identify it."""
        return {
            "tag": self.tag,
            "email": self.email,
            "email local part": self.email.split("@")[0],
            "phone digits": self.phone_digits,
            "phone": self.phone,
            "name": self.name.split()[-1],
        }

    def found_in(self, text: str) -> list[str]:
        lowered = text.lower()
        return [k for k, v in self.needles().items() if v.lower() in lowered]


@pytest.fixture
def canaries() -> list[Canary]:
    rng = random.Random(uuid.uuid4().int)
    return [Canary(rng) for _ in range(3)]


def now_iso(offset_s: float = 0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


def accepted_events(c: Canary) -> list[dict[str, Any]]:
    ids = {"email": c.email, "phone": c.phone, "user_id": c.user_id}
    traits = {"name": c.name, "email": c.email, "phone": c.phone, "region": "kanto"}
    base = {"channel": "app", "identifiers": ids, "traits": traits}
    return [
        {**base, "event_id": f"ev-{uuid.uuid4().hex}", "type": "page_view",
         "touchpoint": "home", "occurred_at": now_iso(-120)},
        {**base, "event_id": f"ev-{uuid.uuid4().hex}", "type": "survey_response",
         "touchpoint": "delivery", "occurred_at": now_iso(-60),
         "properties": {"nps": 0, "csat": 1, "ces": 5, "comment": c.comment}},
        {**base, "event_id": f"ev-{uuid.uuid4().hex}", "type": "feedback",
         "touchpoint": "delivery", "occurred_at": now_iso(-30),
         "properties": {"comment": c.comment}},
    ]  # fmt: skip


def rejected_events(c: Canary) -> list[dict[str, Any]]:
    """Each refused by the ingest (4xx); every one carries the canary."""
    ok = accepted_events(c)[1]
    return [
        {**ok, "properties": {"nps": 11, "comment": c.comment}},  # nps out of range
        {**ok, "occurred_at": c.email},  # not a time
        {**ok, "identifiers": {"email": 12345}, "traits": {"name": c.name}},
        {**ok, "type": f"Bad Type {c.name}"},
        {**ok, "event_id": ""},
        {**ok, "properties": {"csat": c.phone, "comment": c.comment}},
        {**ok, "identifiers": {}, "traits": {"email": c.email, "name": c.name}},
    ]


async def test_personal_data_leaks_nowhere(
    security_platform: Any, private_infra: Any, canaries: list[Canary]
) -> None:
    platform = security_platform.platform
    topics = Topics(prefix=platform.prefix)
    bootstrap = private_infra.bootstrap
    bodies: list[tuple[str, str]] = []  # (what, error body) of every 4xx/5xx we got

    def keep_error(what: str, response: httpx.Response) -> None:
        if response.status_code >= 400:
            bodies.append((what, response.text))

    ingest, profile, alerting = platform.ingest, platform.api["profile"], platform.api["alerting"]
    for c in canaries:
        # Valid: native batch and single, Segment identify/track.
        await platform.post(*accepted_events(c)[:2])
        r = await ingest.post("/v1/events", json=accepted_events(c)[2])
        assert r.status_code == 200, r.text
        r = await ingest.post(
            "/v1/identify",
            json={"messageId": uuid.uuid4().hex, "userId": c.user_id,
                  "traits": {"email": c.email, "name": c.name, "phone": c.phone}},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        # Refused, one by one and in a batch.
        for event in rejected_events(c):
            r = await ingest.post("/v1/events", json=event)
            assert 400 <= r.status_code < 500, (event, r.text)
            keep_error("ingest single", r)
        r = await ingest.post("/v1/events/batch", json={"events": rejected_events(c)})
        assert r.status_code == 400, r.text
        keep_error("ingest batch", r)
        r = await ingest.post("/v1/track", json={"userId": c.user_id, "event": c.comment})
        keep_error("segment track without messageId", r)
        assert r.status_code == 400, r.text
        r = await ingest.post("/v1/events", content=f'{{"email": "{c.email}", ', headers={
            "content-type": "application/json"})  # fmt: skip
        keep_error("ingest broken json", r)
        assert r.status_code == 400
        # A wrong write key with personal data in the body.
        r = await ingest.post("/v1/events", json=accepted_events(c)[0], auth=(c.email, ""))
        keep_error("ingest bad key", r)
        assert r.status_code == 401
        # Reads that fail, with the personal data in the request.
        for type_, value in (("email", c.email.replace("@", "@@")), ("phone", c.phone + "x"),
                             ("name", c.name), ("email", "x" + c.email + "x"),
                             ("email", c.email + " " * 600)):  # fmt: skip
            r = await profile.get("/v1/profiles/lookup", params={"type": type_, "value": value})
            keep_error(f"lookup {type_}", r)
        for path in (f"/v1/profiles/{c.email}", f"/v1/profiles/{c.email}/timeline",
                     f"/v1/profiles/{c.name}/merges"):  # fmt: skip
            keep_error(f"GET {path}", await profile.get(path))
        keep_error("erase unknown", await profile.delete(f"/v1/profiles/{c.email}"))
        keep_error("alert unknown", await alerting.get(f"/v1/alerts/{c.email}"))
        keep_error(
            "ack unknown",
            await alerting.post(f"/v1/alerts/{c.tag}/ack", json={"by": c.name}),
        )
        keep_error(
            "route test",
            await alerting.post("/v1/routes/test", json={"labels": {c.email: c.name}}),
        )
        keep_error(
            "silence",
            await alerting.post(
                "/v1/silences",
                json={"matchers": [f'customer="{c.email}"'], "created_by": c.name,
                      "comment": c.comment, "ends_at": now_iso(3600)},
            ),
        )  # fmt: skip

    poison = await produce_poison(bootstrap, topics, canaries)

    # The pipeline: each canary customer resolved, scored, and alerted on.
    customers = {}
    for c in canaries:
        p = await platform.profile_when("email", c.email, lambda p: True, what="canary profile")
        customers[c.tag] = p["customer_id"]

    async def alerted() -> list[dict[str, Any]] | None:
        alerts = await platform.alerts()
        mine = [a for a in alerts if a.get("labels", {}).get("customer_id") in customers.values()]
        kinds = {(a["labels"]["customer_id"], a["kind"]) for a in mine}
        wanted = {(cid, "negative_feedback") for cid in customers.values()}
        return mine if wanted <= kinds else None

    alerts = await platform.until(alerted, timeout=90, what="negative-feedback alerts")
    full = [(await alerting.get(f"/v1/alerts/{a['alert_id']}")).json() for a in alerts]
    dead = await platform.until(
        lambda: dead_letters(bootstrap, topics, len(poison)), timeout=60, what="dead letters"
    )

    leaks: list[str] = []

    def scan(where: str, text: str) -> None:
        for c in canaries:
            if found := c.found_in(text):
                at = min(text.lower().find(c.needles()[k].lower()) for k in found)
                leaks.append(f"{where}: {found} ...{text[max(0, at - 120) : at + 80]!r}")

    for what, body in bodies:
        scan(f"error body ({what})", body)
    for alert in full:
        scan(f"alert {alert['alert_id']}", json.dumps(alert, ensure_ascii=False))
    for delivery in platform.receiver.deliveries:
        scan(f"webhook {delivery.path}", json.dumps(delivery.body, ensure_ascii=False))
    async with httpx.AsyncClient(timeout=30) as client:
        for name, url in platform.urls.items():
            scan(f"{name} /metrics", (await client.get(f"{url}/metrics")).text)
    # Logs last: everything above has happened and been logged by now.
    await asyncio.sleep(1)
    for process in platform.processes:
        scan(f"{process.name} log", process.log.read_text(errors="replace"))
    for topic, headers, value in dead:
        scan(f"dead-letter headers on {topic}", repr(headers))
        if value is not None and any(c.found_in(value.decode(errors="replace")) for c in canaries):
            assert value in poison, f"{topic}: a dead letter that is not what we produced"

    assert len(bodies) >= 20 * len(canaries) // 2, "fewer error answers than requests sent"
    assert full and dead, "no alerts or no dead letters to search"
    assert not leaks, "personal data found:\n" + "\n".join(leaks)


async def produce_poison(bootstrap: str, topics: Topics, canaries: list[Canary]) -> list[bytes]:
    """Messages no consumer can process, carrying the canary, on every consumed topic."""
    producer = make_producer(bootstrap)
    await producer.start()
    sent: list[bytes] = []
    try:
        for c in canaries:
            messages = {
                topics.touchpoints: [
                    # not JSON
                    f'{{"event_id": "p-{uuid.uuid4().hex}", "identifiers": {{"email": "{c.email}"'
                    .encode(),
                    json.dumps({"event_id": f"p2-{uuid.uuid4().hex}", "type": "feedback",
                                "identifiers": {"email": c.email}, "traits": {"name": c.name},
                                "properties": {"comment": c.comment}}).encode(),
                    json.dumps({"event_id": f"p3-{uuid.uuid4().hex}", "type": "feedback",
                                "channel": "web",
                                "occurred_at": now_iso(), "received_at": now_iso(),
                                "source": "dev", "identifiers": {"email": f"not-an-email-{c.tag}",
                                                                 "phone": f"ext-{c.tag}"},
                                "properties": {"comment": c.comment}}).encode(),
                ],
                topics.touchpoints_resolved: [
                    json.dumps({"event_id": f"p4-{uuid.uuid4().hex}", "customer_id": c.email,
                                "identifiers": {"email": c.email},
                                "properties": {"comment": c.comment}}).encode(),
                ],
                topics.signals: [
                    json.dumps({"kind": "negative_feedback", "customer_id": c.email,
                                "evidence": {"comment": c.comment}}).encode(),
                ],
            }  # fmt: skip
            for topic, values in messages.items():
                for value in values:
                    await producer.send_and_wait(topic, key=c.email.encode(), value=value)
                    sent.append(value)
    finally:
        await producer.stop()
    return sent


async def dead_letters(
    bootstrap: str, topics: Topics, expected: int
) -> list[tuple[str, list[tuple[str, bytes]], bytes | None]] | None:
    """(topic, headers, value) of every message on every dead-letter topic of the platform,
    once there are at least ``expected`` of them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(topics.prefix)]
    finally:
        await admin.close()
    dlqs = [t for t in names if t.endswith(".dlq")]
    if not dlqs:
        return None
    consumer = make_consumer(bootstrap, group_id=None)
    await consumer.start()
    out: list[tuple[str, list[tuple[str, bytes]], bytes | None]] = []
    try:
        await consumer._client.force_metadata_update()  # topics this consumer never read
        partitions = [
            TopicPartition(t, p) for t in dlqs for p in consumer.partitions_for_topic(t) or []
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(*partitions, timeout_ms=1000)
            for tp, records in batch.items():
                out.extend((tp.topic, list(r.headers), r.value) for r in records)
    finally:
        await consumer.stop()
    return out if len(out) >= expected else None
