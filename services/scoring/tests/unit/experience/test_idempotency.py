"""Idempotency of a customer's state: an event is applied once, by its id, whatever order a
partition is delivered in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cxm_scoring.experience.model_config import DEFAULT_BGNBD
from cxm_scoring.experience.models import ExperienceState
from cxm_scoring.experience.service import ScoringModel, apply_touchpoint, source_key
from cxm_shared.events import ResolvedTouchpoint

MODEL = ScoringModel(bgnbd=DEFAULT_BGNBD)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
SOURCE = source_key("r", 2)


def survey(n: int, nps: int) -> ResolvedTouchpoint:
    at = T0 + timedelta(minutes=n)
    return ResolvedTouchpoint(
        event_id=f"ev-{n}",
        type="survey_response",
        channel="web",
        occurred_at=at,
        received_at=at,
        source="test",
        identifiers={"user_id": "u-1"},
        properties={"nps": nps},
        customer_id="c-1",
    )


def apply(state: ExperienceState, n: int, offset: int):
    return apply_touchpoint(
        state, event=survey(n, nps=n % 11), model=MODEL, source=SOURCE, offset=offset
    )


def test_a_partition_delivered_out_of_order_loses_nothing() -> None:
    """faust can hand an event prefetched before a rebalance to the agent ahead of earlier
    ones (faust-streaming #221/#236): the earlier ones are still new events, not duplicates."""
    state = ExperienceState(customer_id="c-1")
    late = apply(state, 5, offset=50)
    assert late is not None and not late.reordered
    for n in range(5):
        applied = apply(state, n, offset=10 * n)
        assert applied is not None and applied.reordered
    assert state.events_applied == 6
    assert state.survey.latest_nps is not None


def test_a_redelivery_changes_nothing_at_the_same_or_a_new_offset() -> None:
    state = ExperienceState(customer_id="c-1")
    for n in range(4):
        assert apply(state, n, offset=n) is not None
    before = state.to_dict()
    assert apply(state, 2, offset=2) is None  # Kafka redelivers after a crash
    assert apply(state, 3, offset=99) is None  # republished upstream at a new offset
    assert state.to_dict() == before
