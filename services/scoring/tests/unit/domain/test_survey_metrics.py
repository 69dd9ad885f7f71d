"""NPS, CSAT, CES: incremental state against brute-force recomputation, and merging."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxm_scoring.domain.errors import InvalidScoreError
from cxm_scoring.domain.survey import (
    WINDOW_MAX_RESPONSES,
    WINDOW_S,
    NpsCategory,
    SurveyResponse,
    SurveyState,
    lifetime_summary,
    merge_survey_states,
    nps_category,
    record_response,
    window_summary,
)

DAY = 86_400.0
T0 = 1_700_000_000.0

response_strategy = st.builds(
    SurveyResponse,
    occurred_at=st.floats(min_value=T0, max_value=T0 + 400 * DAY),
    nps=st.none() | st.integers(0, 10),
    csat=st.none() | st.integers(1, 5),
    ces=st.none() | st.integers(1, 5),
)
responses_strategy = st.lists(response_strategy, max_size=80)


def build(responses):
    state = SurveyState()
    for r in responses:
        record_response(state, response=r)
    return state


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def brute_summary(responses):
    """Metrics straight from the definitions."""
    nps = [r.nps for r in responses if r.nps is not None]
    csat = [r.csat for r in responses if r.csat is not None]
    ces = [r.ces for r in responses if r.ces is not None]
    return {
        "nps": (
            100 * (sum(s >= 9 for s in nps) - sum(s <= 6 for s in nps)) / len(nps) if nps else None
        ),
        "csat_mean": mean(csat),
        "csat_top2": sum(s in (4, 5) for s in csat) / len(csat) if csat else None,
        "ces_mean": mean(ces),
        "ces_high": sum(s in (4, 5) for s in ces) / len(ces) if ces else None,
        "counts": (len(nps), len(csat), len(ces)),
    }


def as_brute(summary):
    return {
        "nps": summary.nps,
        "csat_mean": summary.csat_mean,
        "csat_top2": summary.csat_top2_share,
        "ces_mean": summary.ces_mean,
        "ces_high": summary.ces_high_effort_share,
        "counts": (summary.nps_responses, summary.csat_responses, summary.ces_responses),
    }


def approx(d):
    return {k: v if v is None or isinstance(v, tuple) else pytest.approx(v) for k, v in d.items()}


def brute_window(responses, as_of):
    """The window by its definition: 90 days back from the newest, at most 50 newest kept,
    then what lies in [as_of - 90 d, as_of]."""
    ordered = sorted(responses, key=SurveyResponse.timeline_key)
    if ordered:
        newest = ordered[-1].occurred_at
        ordered = [r for r in ordered if r.occurred_at >= newest - WINDOW_S]
        ordered = ordered[-WINDOW_MAX_RESPONSES:]
    return [r for r in ordered if as_of - WINDOW_S <= r.occurred_at <= as_of]


@pytest.mark.parametrize(
    ("score", "category"),
    [
        (0, "detractor"),
        (6, "detractor"),
        (7, "passive"),
        (8, "passive"),
        (9, "promoter"),
        (10, "promoter"),
    ],
)
def test_nps_category_boundaries(score, category):
    assert nps_category(score=score) is NpsCategory(category)


@pytest.mark.parametrize("bad", [-1, 11, 7.5, "9", True, None])
def test_nps_outside_the_scale_is_refused(bad):
    with pytest.raises(InvalidScoreError, match="nps"):
        nps_category(score=bad)


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"csat": 0}, "csat"), ({"ces": 6}, "ces"), ({}, "none of")]
)
def test_checked_response_names_the_bad_field(kwargs, field):
    with pytest.raises(InvalidScoreError, match=field):
        SurveyResponse.checked(occurred_at=T0, **kwargs)


def test_checked_response_accepts_whole_floats():
    assert SurveyResponse.checked(occurred_at=T0, nps=9.0).nps == 9


def test_known_example():
    # 5 promoters, 3 passives, 2 detractors: NPS = 50 % - 20 % = 30.
    scores = [10, 9, 9, 10, 9, 7, 8, 7, 3, 6]
    state = build(SurveyResponse(occurred_at=T0 + i, nps=s) for i, s in enumerate(scores))
    assert lifetime_summary(state).nps == pytest.approx(30.0)
    assert state.latest_nps.score == 6


@given(responses=responses_strategy, order=st.randoms(use_true_random=False))
def test_lifetime_metrics_match_brute_force_in_any_arrival_order(responses, order):
    shuffled = list(responses)
    order.shuffle(shuffled)
    summary = lifetime_summary(build(shuffled))
    assert as_brute(summary) == approx(brute_summary(responses))


@given(responses=responses_strategy, order=st.randoms(use_true_random=False))
def test_latest_is_newest_by_occurrence_not_arrival(responses, order):
    shuffled = list(responses)
    order.shuffle(shuffled)
    state = build(shuffled)
    for name in ("nps", "csat", "ces"):
        answered = [r for r in responses if getattr(r, name) is not None]
        latest = getattr(state, f"latest_{name}")
        if not answered:
            assert latest is None
            continue
        newest = max(answered, key=lambda r: (r.occurred_at, getattr(r, name)))
        assert (latest.occurred_at, latest.score) == (newest.occurred_at, getattr(newest, name))


@given(
    responses=responses_strategy,
    order=st.randoms(use_true_random=False),
    as_of_offset=st.floats(0, 500 * DAY),
)
def test_window_matches_brute_force(responses, order, as_of_offset):
    shuffled = list(responses)
    order.shuffle(shuffled)
    as_of = T0 + as_of_offset
    summary = window_summary(build(shuffled), as_of=as_of)
    assert as_brute(summary) == approx(brute_summary(brute_window(responses, as_of)))


def test_window_forgets_answers_older_than_ninety_days():
    state = build(
        [SurveyResponse(occurred_at=T0, nps=0), SurveyResponse(occurred_at=T0 + DAY, nps=10)]
    )
    assert window_summary(state, as_of=T0 + 2 * DAY).nps == pytest.approx(0.0)
    assert window_summary(state, as_of=T0 + 90.5 * DAY).nps == pytest.approx(100.0)
    assert window_summary(state, as_of=T0 + 200 * DAY).nps is None
    assert lifetime_summary(state).nps == pytest.approx(0.0)


def test_window_state_is_bounded():
    state = build(SurveyResponse(occurred_at=T0 + i, nps=i % 11) for i in range(500))
    assert len(state.window) == WINDOW_MAX_RESPONSES
    assert lifetime_summary(state).nps_responses == 500


@given(a=responses_strategy, b=responses_strategy)
def test_merge_equals_one_customer_with_both_histories(a, b):
    merged = merge_survey_states(build(a), build(b))
    assert merged == build(a + b)


@given(a=responses_strategy, b=responses_strategy, c=responses_strategy)
def test_merge_is_commutative_and_associative(a, b, c):
    sa, sb, sc = build(a), build(b), build(c)
    assert merge_survey_states(sa, sb).to_dict() == merge_survey_states(sb, sa).to_dict()
    left = merge_survey_states(merge_survey_states(sa, sb), sc)
    right = merge_survey_states(sa, merge_survey_states(sb, sc))
    assert left.to_dict() == right.to_dict()


@given(responses=responses_strategy)
def test_state_survives_json_round_trip(responses):
    state = build(responses)
    restored = SurveyState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state


def test_a_bad_response_leaves_the_state_untouched():
    state = build([SurveyResponse(occurred_at=T0, nps=9, csat=5)])
    before = SurveyState.from_dict(state.to_dict())
    with pytest.raises(InvalidScoreError, match="ces"):
        record_response(state, response=SurveyResponse(occurred_at=T0 + 1, nps=3, ces=9))
    assert state == before
