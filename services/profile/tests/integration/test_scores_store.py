"""The scores the profile API serves: a batch of the compacted scores topic in one
transaction, newest record per customer, never an older snapshot over a newer one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cxm_profile.identity.rules import DEFAULT_RULES, load_rules
from cxm_profile.profiles.service import store_scores
from cxm_profile.stream.service import resolve_touchpoint
from cxm_shared.events import ScoreSnapshot, Touchpoint

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def snap(customer: str, events: int, at: datetime) -> ScoreSnapshot:
    return ScoreSnapshot(customer_id=customer, updated_at=at, events_applied=events)


async def stored(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT customer_id, (snapshot->>'events_applied')::int FROM profile.scores")
        )
        return dict(rows.all())


async def test_a_batch_keeps_the_newest_record_per_customer_and_no_stale_one(
    graph_engine: AsyncEngine, make_touchpoint: Callable[..., Touchpoint]
) -> None:
    rules = load_rules(DEFAULT_RULES)
    a, b, c = [
        (
            await resolve_touchpoint(
                engine=graph_engine, touchpoint=make_touchpoint(email=e), rules=rules, secret=b"s"
            )
        ).customer_id
        for e in ("a@example.org", "b@example.org", "c@example.org")
    ]
    assert a and b and c
    later = T0 + timedelta(hours=1)
    await store_scores(
        engine=graph_engine,
        records=[
            (a, snap(a, 1, T0)),
            (b, snap(b, 1, T0)),
            (a, snap(a, 2, later)),  # newer: wins
            (c, snap(c, 1, T0)),
            (c, None),  # a tombstone after the snapshot: nothing stored
            ("never-seen", snap("never-seen", 5, T0)),  # not a customer of this service
        ],
    )
    assert await stored(graph_engine) == {a: 2, b: 1}
    # An older snapshot arriving later (another worker's, before a hand-over) does not win;
    # a tombstone deletes.
    await store_scores(engine=graph_engine, records=[(a, snap(a, 1, T0)), (b, None)])
    assert await stored(graph_engine) == {a: 2}
