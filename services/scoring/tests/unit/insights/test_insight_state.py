"""One customer's insight state: funnel progress, driver observations, experiment outcomes,
idempotency, and the contribution bookkeeping the worker relies on."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxm_scoring.insights.config import (
    InsightsConfigError,
    compile_insights_config,
    load_insights_config,
)
from cxm_scoring.insights.report import drivers_report, experiment_report, funnel_report
from cxm_scoring.insights.state import (
    CustomerInsights,
    add_into,
    apply_event,
    contribution,
    decode_aggregate,
    encode_aggregate,
    merge_aggregates,
    set_segments,
)
from cxm_shared.events import ResolvedTouchpoint

CONFIG = load_insights_config()
T0 = datetime(2026, 3, 1, tzinfo=UTC)
_ids = itertools.count()


def tp(
    type_: str, touchpoint: str | None = None, minutes: float = 0, **props: Any
) -> ResolvedTouchpoint:
    return ResolvedTouchpoint(
        event_id=f"e{next(_ids)}",
        type=type_,
        channel="web",
        touchpoint=touchpoint,
        occurred_at=T0 + timedelta(minutes=minutes),
        received_at=T0,
        source="test",
        identifiers={"user_id": "u"},
        properties=props,
        customer_id="c1",
    )


def run(
    events: list[ResolvedTouchpoint], state: CustomerInsights | None = None
) -> CustomerInsights:
    state = state or CustomerInsights()
    for event in events:
        apply_event(state, event, config=CONFIG)
    return state


def test_funnel_counts_steps_in_order_only() -> None:
    state = run(
        [
            tp("page_view", "checkout"),  # checkout before the product page: not a step yet
            tp("page_view", "product_page"),
            tp("cart_abandon", "cart"),
            tp("purchase", "checkout", amount=10.0),
            tp("delivery", "delivery", status="delivered"),  # payment skipped: stops here
        ]
    )
    assert state.funnels["purchase_journey"] == 3
    report = funnel_report(contribution(state, CONFIG), CONFIG.funnel("purchase_journey"))
    assert [s.customers for s in report.steps] == [1, 1, 1, 0, 0, 0]
    assert report.biggest_drop_off is not None
    assert (report.biggest_drop_off.from_step, report.biggest_drop_off.to_step) == (
        "checkout",
        "payment",
    )


def test_driver_counts_toward_the_next_answer_only() -> None:
    state = run(
        [
            tp("survey_response", "nps_survey", nps=9),
            tp("delivery", "delivery", status="failed"),
            tp("support_contact", "hotline", wait_seconds=900, resolved=True),
            tp("survey_response", "nps_survey", nps=3, csat=2),
            tp("survey_response", "nps_survey", nps=8),
        ]
    )
    nps = state.observations["nps"]
    assert nps[""] == [2, 17, 145]  # 9 and 8: nothing happened before them
    assert nps["failed_delivery|long_hotline_wait"] == [1, 3, 9]
    assert state.observations["csat"] == {"failed_delivery|long_hotline_wait": [1, 2, 4]}
    assert state.pending == []


def test_high_effort_checkout_counts_for_the_same_answer() -> None:
    state = run([tp("survey_response", "checkout", nps=4, ces=5)])
    assert state.observations["nps"] == {"high_effort_checkout": [1, 4, 16]}


def test_invalid_scores_are_ignored() -> None:
    state = run([tp("survey_response", "nps_survey", nps=11, csat=True)])
    assert state.observations == {}


def test_experiment_outcomes_within_the_window() -> None:
    state = CustomerInsights()
    set_segments(state, ["rfm:loyal"])
    run(
        [
            tp("purchase", "checkout", minutes=-5, amount=99.0),  # before exposure: not counted
            tp("experiment_exposure", "home", experiment_id="banner", variant="B"),
            tp("experiment_exposure", "home", experiment_id="banner", variant="A"),  # sticky
            tp("survey_response", "nps_survey", minutes=1, nps=10),
            tp("survey_response", "nps_survey", minutes=2, nps=2),  # only the first counts
            tp("purchase", "checkout", minutes=3, amount=40.0),
            tp("purchase", "checkout", minutes=60 * 24 * 15, amount=1000.0),  # after 14 days
        ],
        state,
    )
    exp = state.experiments["banner"]
    assert (exp["v"], exp["cv"], exp["rev"], exp["nps"], exp["seg"]) == (
        "B",
        1,
        40.0,
        10.0,
        ["rfm:loyal"],
    )
    agg = contribution(state, CONFIG)
    report = experiment_report(agg, "banner", window_days=14, segment="rfm:loyal")
    assert report is not None
    assert report.variants[0].variant == "B" and report.variants[0].converted == 1
    assert report.segments == ["rfm:loyal"]


def test_context_experiment_is_read_when_properties_lack_it() -> None:
    event = tp("experiment_exposure", "home").model_copy(
        update={"context": {"experiment": {"id": "x1", "variant": "control"}}}
    )
    assert run([event]).experiments["x1"]["v"] == "control"


def test_redelivered_events_are_not_counted_twice() -> None:
    state = CustomerInsights()
    survey = tp("survey_response", "nps_survey", nps=7)
    purchase = tp("purchase", "checkout", amount=5.0)
    exposure = tp("experiment_exposure", "home", experiment_id="e", variant="A")
    for offset, event in enumerate([exposure, survey, purchase]):
        assert apply_event(state, event, config=CONFIG, source="r:0", offset=offset)
    before = state.to_dict()
    for offset, event in enumerate([exposure, survey, purchase]):  # same offsets again
        assert not apply_event(state, event, config=CONFIG, source="r:0", offset=offset)
    # the same events republished upstream at new offsets
    assert not apply_event(state, survey, config=CONFIG, source="r:0", offset=10)
    assert not apply_event(state, purchase, config=CONFIG, source="r:0", offset=11)
    assert state.to_dict() == before


def test_incremental_aggregate_equals_a_rescan() -> None:
    """The worker's bookkeeping: subtracting old and adding new contributions as customers
    change gives the same aggregate as summing every final state."""
    events = [
        [tp("page_view", "product_page"), tp("cart_abandon", "cart")],
        [tp("delivery", "delivery", status="failed"), tp("survey_response", "x", nps=2)],
        [tp("experiment_exposure", "home", experiment_id="e", variant="B")],
        [tp("purchase", "checkout", amount=12.5), tp("survey_response", "x", nps=9, csat=5)],
    ]
    states = [CustomerInsights(), CustomerInsights(), CustomerInsights()]
    running: dict = {}
    for batch_no, batch in enumerate(events):
        for i, state in enumerate(states):
            old = contribution(CustomerInsights.from_dict(state.to_dict()), CONFIG)
            set_segments(state, ["vip"] if (i + batch_no) % 2 else [])
            run(batch[i % len(batch) :], state)
            add_into(running, old, -1.0)
            add_into(running, contribution(state, CONFIG))
    rescan = merge_aggregates(contribution(s, CONFIG) for s in states)
    left, right = (
        decode_aggregate(encode_aggregate(running)),
        decode_aggregate(encode_aggregate(rescan)),
    )
    assert left.keys() == right.keys()
    for key, values in right.items():
        assert left[key] == pytest.approx(values), key


def test_state_round_trips_through_json() -> None:
    state = run(
        [tp("page_view", "product_page"), tp("survey_response", "x", nps=6)],
        CustomerInsights(partition=2),
    )
    assert CustomerInsights.from_dict(state.to_dict()) == state


def test_drivers_report_names_drivers_it_cannot_estimate() -> None:
    agg = contribution(run([tp("survey_response", "x", nps=6)]), CONFIG)
    result = drivers_report(agg, CONFIG, metric="nps")
    assert result.observations == 1 and result.drivers == []
    assert "failed_delivery" in result.not_estimable


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (
            {"funnels": [{"name": "f", "steps": [{"name": "a", "match": [{"type": "x"}]}]}]},
            "funnels[0].steps",
        ),
        ({"drivers": [{"name": "d", "match": [{"channel": "web"}]}]}, "drivers[0].match[0]"),
        (
            {"drivers": [{"name": "d", "match": [{"type": "x", "properties": {"n": {"~": 1}}}]}]},
            "drivers[0].match[0].properties.n",
        ),
        (
            {
                "drivers": [
                    {"name": "d", "match": {"type": "x"}},
                    {"name": "d", "match": {"type": "y"}},
                ]
            },
            "drivers[1].name",
        ),
        ({"experiments": {"window_days": 0}}, "experiments.window_days"),
    ],
)
def test_config_errors_name_the_entry(data: dict, where: str) -> None:
    with pytest.raises(InsightsConfigError) as info:
        compile_insights_config(data)
    assert info.value.where == where
