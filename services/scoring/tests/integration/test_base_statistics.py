"""The base-statistics timer: every partition's purchase histogram goes through the broker
and comes back as base-wide decile cut points, which the snapshots then use."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from cxm_shared.events import ResolvedTouchpoint, ScoreSnapshot, decode
from cxm_shared.topics import Topics

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
CUSTOMERS = 20


def purchase(customer: str, i: int, amount: float) -> ResolvedTouchpoint:
    return ResolvedTouchpoint(
        event_id=f"p{i}",
        type="purchase",
        channel="web",
        touchpoint="checkout",
        occurred_at=T0 + timedelta(minutes=i),
        received_at=T0 + timedelta(minutes=i),
        source="test",
        identifiers={"user_id": "u"},
        properties={"amount": amount, "items": []},
        customer_id=customer,
    )


async def test_timer_turns_partition_histograms_into_base_wide_deciles(
    scoring_settings, run_scoring, publish, read_until, topics: Topics
) -> None:
    settings = scoring_settings.model_copy(update={"base_stats_interval_s": 0.5})
    # Customer i spends 10 * (i + 1): the base splits into ten deciles of two customers each.
    customers = [f"base-{i}" for i in range(CUSTOMERS)]
    async with run_scoring(settings) as app:
        for i, customer in enumerate(customers):
            event = purchase(customer, i, 10.0 * (i + 1))
            await publish(topics.touchpoints_resolved, customer, event)
        scorer = app.state.faust.scorer
        deadline = time.monotonic() + 60
        while scorer.model.decile_cuts is None or scorer.model.decile_cuts.base_size < CUSTOMERS:
            assert time.monotonic() < deadline, "cut points never covered the whole base"
            await asyncio.sleep(0.2)
        # Every partition contributed (customers hash to all three of them).
        assert len(scorer.base_by_partition) == scoring_settings.topic_partitions
        assert scorer.model.decile_cuts.base_size == CUSTOMERS

        # The next event of the top and of the bottom spender is scored against the whole base.
        top, bottom = customers[-1], customers[0]
        await publish(topics.touchpoints_resolved, top, purchase(top, 100, 0.01))
        await publish(topics.touchpoints_resolved, bottom, purchase(bottom, 101, 0.01))

        def deciles(records) -> dict[str, int | None]:
            out: dict[str, int | None] = {}
            for k, v in records:
                snap = decode(ScoreSnapshot, v)
                if snap.events_applied == 2:
                    out[k.decode()] = snap.decile
            return out

        scores = await read_until(topics.scores, lambda r: {top, bottom} <= deciles(r).keys())
        assert deciles(scores)[top] == 1  # decile 1: the top spenders
        assert deciles(scores)[bottom] == 10
