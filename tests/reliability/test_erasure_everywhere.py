"""Erasure, end to end, down to the stores: a customer found by one of their identifiers (a
phone number here) is erased through the profile API, and afterwards nothing of the platform
names them —

- no row of any table of any service's schema (ingest, profile, alerting) holds their
  customer ids, the raw identifier values they were sent with (as sent and normalised) or
  the keyed hashes of those identifiers. The one place the hashes must stay is the profile
  service's suppression list: that is what keeps later events from re-creating them;
- no compacted topic's latest value per key (the cx.scores tombstone, the scoring table's
  changelog, the scoring base statistics) — except the scoring table's erased marker under
  the erased id, which holds nothing but "erased" (it makes scoring refuse late events);
- no faust table on any scoring worker (each worker's RocksDB store, opened after it stops);
- no alert (alerting API);
- and replaying the whole raw topic from its start (the profile service's consumer group
  rewound to offset 0 on every topic it reads, then the worker started again) does not bring
  them back, while a bystander sent alongside is untouched throughout (so the scans can see
  what they look for).

The API-level view of the same erasure (404s, alerts and SSE stream gone) is
tests/e2e/test_customer_journeys.py; the profile tables alone,
services/profile/tests/integration.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from rocksdict import AccessType, Options, Rdict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cxm_chaos.check import partitions_of
from cxm_chaos.services import TOKEN, WRITE_KEY, Fleet, build_fleet
from cxm_profile.config import ProfileSettings
from cxm_profile.identity.identifiers import parse_identifiers
from cxm_profile.identity.normalisers import normalise
from cxm_shared.kafka import drop_topics
from cxm_shared.lag import OffsetsReader
from cxm_shared.testing.infra import fresh_database
from cxm_shared.testing.polling import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

HASH_KEY = "erasure-test-identifier-hash-key"
PARTITIONS = 2


def journey(run: str, who: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """A customer across web, app, store and hotline (several provisional profiles merged
    into one), ending with an angry detractor survey that raises alerts."""
    r = f"{who}{run}"
    n = 1000 + int(run[:6], 16) % 9000  # 090-0xxx is not a valid number: never a leading 0
    ids = {
        "anonymous_id": f"anon-{r}",
        "device_id": f"dev-{r}",
        "user_id": f"usr-{r}",
        "email": f"Erase.Me.{r}@Example.jp",  # normalised to lower case by the profile service
        "phone": f"090-{n:04d}-{(n * 7 + (who == 'b')) % 10_000:04d}",  # E.164 once normalised
        "loyalty_id": f"LC-{r}",
    }
    start = datetime.now(UTC) - timedelta(days=10)
    steps = [
        ("page_view", "web", "product_page", ("anonymous_id",), {}),
        ("screen_view", "app", "home", ("device_id",), {}),  # a second provisional profile
        ("page_view", "web", "signup", ("anonymous_id", "user_id", "email"), {}),
        ("screen_view", "app", "login", ("device_id", "user_id"), {}),  # merges the two
        (
            "store_visit",
            "store",
            "loyalty_signup",
            ("loyalty_id", "email", "phone"),
            {"store_id": "st-shibuya"},
        ),
        (
            "support_contact",
            "call_center",
            "hotline",
            ("phone",),
            {"reason": "delivery_delay", "wait_seconds": 1800.0, "resolved": False},
        ),
        (
            "survey_response",
            "call_center",
            "post_contact_survey",
            ("phone",),
            {"nps": 1, "csat": 1, "comment": "Terrible. Nobody helped me and I am furious."},
        ),
    ]
    events = [
        {
            "event_id": f"erase-{r}-{i}",
            "type": type_,
            "channel": channel,
            "touchpoint": touchpoint,
            "occurred_at": (start + timedelta(hours=i)).isoformat(),
            "identifiers": {t: ids[t] for t in id_types},
            "properties": props,
            "traits": {"name": f"Hanako {r}"} if type_ == "page_view" and i else {},
            "context": {"locale": "en-US"},
        }
        for i, (type_, channel, touchpoint, id_types, props) in enumerate(steps)
    ]
    return ids, events


async def until(check: Callable[[], Awaitable[Any]], *, timeout: float, what: str) -> Any:
    return await wait_until(check, timeout=timeout, what=what, every=0.5)


def needles_of(ids: dict[str, str]) -> tuple[set[str], set[str]]:
    """(raw values as sent and normalised, keyed hashes) of a customer's identifiers."""
    settings = ProfileSettings(identifier_hash_key=HASH_KEY)
    rules = settings.rules
    raw, hashes = set(), set()
    for type_, value in ids.items():
        raw.add(value)
        rule = rules.types[type_]
        raw.add(normalise(value, normaliser=rule.normaliser, default_region=rules.default_region))
        parsed = parse_identifiers({type_: value}, rules=rules, secret=settings.secret)
        assert parsed.accepted, (type_, parsed.ignored)
        hashes.add(parsed.accepted[0].key)
    return raw, hashes


async def tables_naming(engine: AsyncEngine, needles: set[str]) -> dict[str, set[str]]:
    """Per schema.table of every non-system schema, which needles some row holds."""
    found: dict[str, set[str]] = {}
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT table_schema, table_name FROM information_schema.tables"
                    " WHERE table_type = 'BASE TABLE' AND table_schema NOT IN"
                    " ('pg_catalog', 'information_schema')"
                )
            )
        ).all()
        assert {s for s, _ in tables} >= {"ingest", "profile", "alerting"}, tables
        for schema, table in tables:
            for needle in needles:
                hit = await conn.scalar(
                    text(
                        f'SELECT EXISTS (SELECT 1 FROM "{schema}"."{table}" t'
                        " WHERE strpos(t::text, :n) > 0)"
                    ),
                    {"n": needle},
                )
                if hit:
                    found.setdefault(f"{schema}.{table}", set()).add(needle)
    return found


async def compacted_topics(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        )
        compacted = []
        for response in responses:
            # (error code, error message, resource type, name, [(config name, value, ...)])
            for resource in response.resources:
                name, configs = resource[3], resource[4]
                policy = {c[0]: c[1] for c in configs}.get("cleanup.policy") or ""
                if "compact" in policy:
                    compacted.append(name)
        return sorted(compacted)
    finally:
        await admin.close()


async def latest_values(bootstrap: str, topic: str) -> dict[bytes | None, bytes | None]:
    """The latest value per key of a whole topic (what compaction converges to)."""
    partitions = await partitions_of(bootstrap, topic)
    assert partitions, f"no topic {topic}"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        latest: dict[bytes | None, bytes | None] = {}
        deadline = time.monotonic() + 60
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    latest[record.key] = record.value
        return latest
    finally:
        await consumer.stop()


def names(blob: bytes | None, needles: set[str]) -> set[str]:
    if not blob:
        return set()
    decoded = blob.decode("utf-8", errors="replace")
    return {n for n in needles if n in decoded}


def erased_marker_only(key: bytes | None, value: bytes | None, erased: set[str]) -> bool:
    """The scoring table's entry for an erased customer: the id as its key, and nothing in
    the value but the fact of the erasure."""
    if key is None or key.decode() not in erased or value is None:
        return False
    entry = orjson.loads(value)
    return (
        entry.get("tombstone") is True
        and entry.get("erased") is True
        and not any(entry.get(k) for k in ("merged_into", "merge_id", "exported"))
    )


def rocksdb_entries(data_dir: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every key/value of every faust RocksDB store under a stopped worker's data dir."""
    out = {}
    for db in sorted(data_dir.rglob("*.db")):
        if not (db / "CURRENT").exists():
            continue
        store = Rdict(str(db), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            out[str(db.relative_to(data_dir))] = list(store.items())
        finally:
            store.close()
    return out


async def profile_group_lag(bootstrap: str, prefix: str) -> int | None:
    reader = OffsetsReader(bootstrap, prefix=prefix)
    try:
        snapshot = await reader.read()
    finally:
        await reader.close()
    lags = [lag for group, _, _, lag in snapshot.lags() if group == "cxm-profile"]
    return sum(lags) if lags else None


async def rewind_group(bootstrap: str, group: str) -> int:
    """Commit offset 0 on every partition ``group`` has an offset for (the group must have no
    live member); returns how many partitions were rewound."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    partitions = [tp for tp, meta in committed.items() if meta.offset > 0]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.commit({tp: 0 for tp in partitions})
    finally:
        await consumer.stop()
    return len(partitions)


@pytest.fixture
async def fleet(
    kafka_bootstrap: str, postgres_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Fleet, str]]:
    prefix = f"ers{uuid.uuid4().hex[:10]}."
    async with fresh_database(postgres_url, prefix="cxm_erase") as database:
        fleet = build_fleet(
            home=tmp_path,
            bootstrap=kafka_bootstrap,
            database_url=database,
            workers={"scoring": 2},
            partitions=PARTITIONS,
            prefix=prefix,
            extra_env={
                "CXM_IDENTIFIER_HASH_KEY": HASH_KEY,
                "CXM_LOG_LEVEL": "INFO",
                # faust's default group session: nothing is killed here, and a busy machine
                # must not see a slow worker expelled and the group rebalanced again and again
                "CXM_BROKER_SESSION_TIMEOUT_S": "60",
                "CXM_BROKER_HEARTBEAT_INTERVAL_S": "3",
            },
        )
        try:
            fleet.start_all()
            await fleet.wait_ready(timeout=420)
            yield fleet, database
        finally:
            await asyncio.to_thread(fleet.stop_all)
            await drop_topics(kafka_bootstrap, prefix=prefix)


async def test_erased_customer_is_in_no_table_topic_store_or_alert_and_replay_keeps_them_out(
    fleet: tuple[Fleet, str], kafka_bootstrap: str
) -> None:
    platform, database = fleet
    run = uuid.uuid4().hex[:8]
    target_ids, target_events = journey(run, "a")
    other_ids, other_events = journey(run, "b")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx.AsyncClient(
            base_url=platform.first("ingest").url, auth=(WRITE_KEY, ""), timeout=30
        ) as ingest,
        httpx.AsyncClient(base_url=platform.first("profile").url, headers=auth, timeout=30) as api,
        httpx.AsyncClient(
            base_url=platform.first("alerting").url, headers=auth, timeout=30
        ) as alerting,
    ):
        # one at a time, in order: each journey's joins happen as a person would make them
        for event in [*target_events, *other_events]:
            response = await ingest.post("/v1/events", json=event)
            assert response.status_code in (200, 202), response.text

        async def scored(ids: dict[str, str], n: int) -> dict[str, Any] | None:
            response = await api.get(
                "/v1/profiles/lookup", params={"type": "email", "value": ids["email"]}
            )
            profile = response.json() if response.status_code == 200 else None
            applied = ((profile or {}).get("scores") or {}).get("events_applied", 0)
            return profile if applied >= n else None

        target = await until(
            lambda: scored(target_ids, len(target_events)), timeout=180, what="target scored"
        )
        other = await until(
            lambda: scored(other_ids, len(other_events)), timeout=180, what="bystander scored"
        )
        assert target["merged_ids"], "the journey should have merged provisional profiles"

        async def alerts_naming(customers: set[str]) -> list[dict[str, Any]]:
            response = await alerting.get("/v1/alerts", params={"limit": 1000})
            assert response.status_code == 200, response.text
            return [a for a in response.json() if names(orjson.dumps(a), customers)]

        await until(
            lambda: alerts_naming({target["customer_id"], *target["merged_ids"]}),
            timeout=60,
            what="the target's alerts",
        )
        await until(
            lambda: alerts_naming({other["customer_id"]}), timeout=60, what="bystander's alerts"
        )

        # -- erase, finding the customer by their phone number ---------------------------
        found = await api.get(
            "/v1/profiles/lookup", params={"type": "phone", "value": target_ids["phone"]}
        )
        assert found.status_code == 200, found.text
        customer = found.json()["customer_id"]
        erased = await api.delete(f"/v1/profiles/{customer}")
        assert erased.status_code == 200, erased.text
        erased_ids = set(erased.json()["erased_customer_ids"])
        assert {target["customer_id"], *target["merged_ids"]} <= erased_ids

        raw, hashes = needles_of(target_ids)
        raw |= {e["traits"]["name"] for e in target_events if e.get("traits")}
        linked_types = {i["type"] for i in target["identifiers"]}
        linked = needles_of({t: v for t, v in target_ids.items() if t in linked_types})[1]
        assert len(linked) >= 2, target["identifiers"]
        other_raw, other_hashes = needles_of(other_ids)
        everything = erased_ids | raw | hashes
        assert not (raw | hashes) & (other_raw | other_hashes)

        async def gone_everywhere() -> bool:
            for type_, value in target_ids.items():
                response = await api.get(
                    "/v1/profiles/lookup", params={"type": type_, "value": value}
                )
                if response.status_code != 404:
                    return False
            scores = await latest_values(kafka_bootstrap, f"{platform.prefix}cx.scores")
            # a tombstone (None) is the latest value of every erased id the topic ever had
            if target["customer_id"].encode() not in scores:
                return False
            if any(scores.get(cid.encode()) is not None for cid in erased_ids):
                return False
            return not await alerts_naming(everything)

        await until(gone_everywhere, timeout=60, what="the erasure to reach every service")

        # -- PostgreSQL: every table of every schema ---------------------------------------
        engine = create_async_engine(database)
        try:

            async def assert_tables_clean(when: str) -> None:
                found = await tables_naming(engine, everything | {other["customer_id"]})
                bystander = {t for t, n in found.items() if other["customer_id"] in n}
                assert "profile.customers" in bystander, found  # the scan sees real rows
                leaks = {
                    t: sorted(
                        n
                        - {other["customer_id"]}
                        - (hashes if t == "profile.suppressions" else set())
                    )
                    for t, n in found.items()
                }
                assert not {t: n for t, n in leaks.items() if n}, f"{when}: {leaks}"
                # the suppression list holds the keys of the identifiers the profile had
                assert found.get("profile.suppressions", set()) >= linked, when

            await assert_tables_clean("after the erasure")

            # -- compacted topics: latest value per key ------------------------------------
            compacted = await compacted_topics(kafka_bootstrap, platform.prefix)
            changelog = f"{platform.prefix}cxm-scoring-experience_by_customer-changelog"
            assert {f"{platform.prefix}cx.scores", changelog} <= set(compacted), compacted
            for topic in compacted:
                latest = await latest_values(kafka_bootstrap, topic)
                # a tombstone (key, None) is how a compacted topic forgets a key: compaction
                # removes the key with it (after delete.retention.ms)
                leaks = [
                    (key, value)
                    for key, value in latest.items()
                    if (names(key, everything) or names(value, everything))
                    and value is not None
                    and not (topic == changelog and erased_marker_only(key, value, erased_ids))
                ]
                assert not leaks, (topic, leaks[:3])
                if topic in (changelog, f"{platform.prefix}cx.scores"):
                    assert other["customer_id"].encode() in latest, topic  # sees real entries

            # -- replay the raw topic from its start -------------------------------------------
            (profile,) = platform.of("profile")
            await asyncio.to_thread(profile.stop)
            rewound = await rewind_group(kafka_bootstrap, f"{platform.prefix}cxm-profile")
            assert rewound >= PARTITIONS, "the profile group had no offsets to rewind"
            profile.start()
            await platform.wait_ready([profile], timeout=180)
            await until(
                lambda: _caught_up(kafka_bootstrap, platform.prefix),
                timeout=120,
                what="the profile worker to re-read every topic from the start",
            )
            for type_, value in target_ids.items():
                response = await api.get(
                    "/v1/profiles/lookup", params={"type": type_, "value": value}
                )
                assert response.status_code == 404, (type_, response.text)
            again = await api.get(
                "/v1/profiles/lookup", params={"type": "email", "value": other_ids["email"]}
            )
            assert again.status_code == 200 and again.json()["customer_id"] == other["customer_id"]
            await assert_tables_clean("after replaying the raw topic")
        finally:
            await engine.dispose()

        # -- the faust table on every scoring worker (their RocksDB stores) --------------------
        scoring = platform.of("scoring")
        for worker in scoring:
            await asyncio.to_thread(worker.stop)
        stores = {
            f"{w.label}/{name}": entries
            for w in scoring
            for name, entries in rocksdb_entries(Path(w.env["CXM_DATA_DIR"])).items()
        }
        assert any(
            key == other["customer_id"].encode()
            for entries in stores.values()
            for key, _ in entries
        ), f"no scoring store holds the bystander: {list(stores)}"
        leaks = [
            (store, key, value)
            for store, entries in stores.items()
            for key, value in entries
            if (names(key, everything) or names(value, everything))
            and not erased_marker_only(key, value, erased_ids)
        ]
        assert not leaks, leaks[:3]


async def _caught_up(bootstrap: str, prefix: str) -> bool:
    lag = await profile_group_lag(bootstrap, prefix)
    return lag == 0
