"""Topic naming and the message contract's round trip."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from cxm_shared.dlq import safe_reason
from cxm_shared.events import Touchpoint, decode, encode
from cxm_shared.topics import Topics


def test_prefix_applies_to_every_topic_and_dlq_follows() -> None:
    topics = Topics(prefix="t1.")
    names = [spec.name for spec in topics.all_specs(partitions=3)]
    assert all(name.startswith("t1.cx.") for name in names)
    assert Topics.dlq(topics.touchpoints) == "t1.cx.touchpoints.dlq"
    assert topics.touchpoints_resolved + ".dlq" in names


def touchpoint(**overrides) -> Touchpoint:
    fields = dict(
        event_id="e-1",
        type="survey_response",
        channel="web",
        touchpoint="checkout",
        occurred_at=datetime(2026, 1, 2, 12, 0, tzinfo=timezone(timedelta(hours=9))),
        received_at=datetime(2026, 1, 2, 3, 0, 1, tzinfo=UTC),
        source="web-shop",
        identifiers={"email": "someone@example.com"},
        properties={"nps": 3},
    )
    fields.update(overrides)
    return Touchpoint(**fields)


def test_touchpoint_round_trips_and_times_are_utc() -> None:
    event = touchpoint()
    again = decode(Touchpoint, encode(event))
    assert again == event
    assert again.occurred_at.utcoffset() == timedelta(0)
    assert again.occurred_at == datetime(2026, 1, 2, 3, 0, tzinfo=UTC)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        touchpoint(occurred_at=datetime(2026, 1, 2, 12, 0))


def test_dead_letter_reason_names_the_field_but_not_the_value() -> None:
    with pytest.raises(ValidationError) as info:
        decode(Touchpoint, b'{"event_id": "secret@example.com", "type": 5}')
    reason = safe_reason(info.value)
    assert "type" in reason
    assert "secret@example.com" not in reason
