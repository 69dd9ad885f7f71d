"""The PostgreSQL identity graph: resolution, concurrency, order and redelivery."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cxm_profile.api import MIGRATIONS
from cxm_profile.identity.rules import DEFAULT_RULES, load_rules
from cxm_profile.models import SCHEMA
from cxm_profile.stream.service import resolve_touchpoint
from cxm_shared.db import migrate
from cxm_shared.events import Touchpoint

pytestmark = pytest.mark.integration

RULES = load_rules(DEFAULT_RULES)
SECRET = b"graph-tests"


async def resolve(engine: AsyncEngine, touchpoint: Touchpoint):
    return await resolve_touchpoint(
        engine=engine,
        touchpoint=touchpoint,
        rules=RULES,
        secret=SECRET,
        now=datetime(2026, 3, 1, tzinfo=UTC),
    )


async def clusters(engine: AsyncEngine) -> set[frozenset[str]]:
    """Live customers as sets of masked identifiers (ids left out: they depend on order)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                """
                WITH RECURSIVE up(start, cur, parent) AS (
                    SELECT customer_id, customer_id, parent_id FROM profile.customers
                    UNION ALL
                    SELECT up.start, c.customer_id, c.parent_id
                    FROM up JOIN profile.customers c ON c.customer_id = up.parent)
                SELECT up.cur AS root, l.identifier_type || ':' || l.identifier_key AS ident
                FROM up JOIN profile.links l ON l.customer_id = up.start
                WHERE up.parent IS NULL
                """
            )
        )
        grouped: dict[str, set[str]] = {}
        for root, ident in rows:
            grouped.setdefault(root, set()).add(ident)
    return {frozenset(v) for v in grouped.values()}


async def count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(text(f"SELECT count(*) FROM profile.{table}"))).scalar_one()


def journey(make: Callable[..., Touchpoint]) -> list[Touchpoint]:
    return [
        make("j1", channel="web", minute=0, anonymous_id="anon-1"),
        make(
            "j2",
            channel="app",
            minute=1,
            anonymous_id="anon-1",
            email="Taro@Example.org",
            device_id="iphone-1",
        ),
        make(
            "j3",
            channel="store",
            minute=2,
            type="purchase",
            email="taro@example.org",
            loyalty_id="L-100",
        ),
        make(
            "j4",
            channel="call_center",
            touchpoint="hotline",
            minute=3,
            type="support_contact",
            loyalty_id="L-100",
            phone="090-1234-5678",
        ),
    ]


async def test_the_journey_is_one_customer_in_postgres(
    graph_engine: AsyncEngine, make_touchpoint: Callable[..., Touchpoint]
) -> None:
    outcomes = [await resolve(graph_engine, tp) for tp in journey(make_touchpoint)]
    assert len({o.customer_id for o in outcomes}) == 1
    (cluster,) = await clusters(graph_engine)
    assert {c.split(":")[0] for c in cluster} == {
        "anonymous_id",
        "email",
        "device_id",
        "loyalty_id",
        "phone",
    }
    assert await count(graph_engine, "timeline") == 4


async def test_out_of_order_and_redelivered_events_give_the_same_graph(
    graph_engine: AsyncEngine,
    make_touchpoint: Callable[..., Touchpoint],
    database_url: str,
) -> None:
    events = [
        *journey(make_touchpoint),
        make_touchpoint("k1", channel="web", minute=5, user_id="u-hanako", email="h@example.org"),
        make_touchpoint("k2", channel="app", minute=6, user_id="u-hanako", cookie_id="c-9"),
        make_touchpoint("k3", channel="store", minute=7, user_id="u-hanako", loyalty_id="L-7"),
    ]
    for tp in events:
        await resolve(graph_engine, tp)
    in_order = await clusters(graph_engine)
    timeline = await count(graph_engine, "timeline")

    # Replay reversed and shuffled with every event delivered twice, into a fresh schema.
    async with graph_engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA profile CASCADE"))
    await asyncio.to_thread(migrate, script_location=MIGRATIONS, url=database_url, schema=SCHEMA)
    replay = list(reversed(events)) + random.Random(7).sample(events, len(events))
    for tp in replay:
        await resolve(graph_engine, tp)
    assert await clusters(graph_engine) == in_order
    assert len(in_order) == 2
    assert await count(graph_engine, "timeline") == timeline == len(events)
    assert await count(graph_engine, "processed_events") == len(events)


async def test_concurrent_events_on_the_same_identifiers_make_one_customer(
    graph_engine: AsyncEngine, make_touchpoint: Callable[..., Touchpoint]
) -> None:
    # Many workers at once: each event carries the shared email plus its own identifiers,
    # so every one of them first sees "no customer yet" unless the locks serialise them.
    events = [
        make_touchpoint(channel="app", email="shared@example.org", device_id=f"d-{n}")
        for n in range(4)
    ] + [
        make_touchpoint(channel="web", device_id=f"d-{n}", anonymous_id=f"a-{n}") for n in range(4)
    ]
    events += [make_touchpoint(channel="app", email="shared@example.org") for _ in range(4)]
    random.Random(3).shuffle(events)
    outcomes = await asyncio.gather(*(resolve(graph_engine, tp) for tp in events))
    assert all(o.customer_id for o in outcomes)
    found = await clusters(graph_engine)
    assert len(found) == 1
    (cluster,) = found
    assert len(cluster) == 1 + 4 + 4
    assert await count(graph_engine, "links") == 1 + 4 + 4
    assert await count(graph_engine, "quarantines") == 0


async def test_a_redelivered_event_goes_out_under_the_customer_it_first_went_out_under(
    graph_engine: AsyncEngine, make_touchpoint: Callable[..., Touchpoint]
) -> None:
    """Between an event's first delivery and its redelivery (a worker died before committing
    its offset) its customer was merged into another. The redelivery is published under the
    first customer id again (whose scoring state already holds the event, or forwards it to
    the winner after the merged state): under the winner it could be applied there first and
    counted twice once the merged-away state is combined in."""
    first = await resolve(graph_engine, make_touchpoint("r1", email="sato@example.org"))
    other = await resolve(graph_engine, make_touchpoint("r2", loyalty_id="L-55"))
    assert first.customer_id != other.customer_id
    joined = await resolve(
        graph_engine, make_touchpoint("r3", email="sato@example.org", loyalty_id="L-55")
    )
    (merge,) = joined.merges
    assert {merge.loser_id, merge.winner_id} == {first.customer_id, other.customer_id}
    again = await resolve(graph_engine, make_touchpoint("r1", email="sato@example.org"))
    assert again.duplicate
    assert again.customer_id == first.customer_id
    again = await resolve(graph_engine, make_touchpoint("r2", loyalty_id="L-55"))
    assert again.duplicate and again.customer_id == other.customer_id
