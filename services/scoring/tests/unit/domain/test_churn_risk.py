"""Churn risk: documented calibration points, monotonicity and reasons."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxm_scoring.domain.churn import ChurnInputs, ChurnWeights, churn_risk

inputs_strategy = st.builds(
    ChurnInputs,
    p_alive=st.none() | st.floats(0, 1),
    latest_nps=st.none() | st.integers(0, 10),
    sentiment=st.none() | st.floats(-1, 1),
    max_contacts_same_reason=st.integers(0, 10),
    failed_deliveries=st.integers(0, 5),
    latest_ces=st.none() | st.integers(1, 5),
)


def test_no_warning_sign_scores_the_baseline():
    calm = churn_risk(inputs=ChurnInputs(p_alive=1.0, latest_nps=10, sentiment=0.8, latest_ces=1))
    assert calm.score == pytest.approx(0.05)
    assert calm.reasons == ()
    assert churn_risk(inputs=ChurnInputs()).score == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("inputs", "score"),
    [
        (ChurnInputs(p_alive=0.0), 0.74),
        (ChurnInputs(latest_nps=0), 0.28),
        (ChurnInputs(p_alive=0.0, latest_nps=0), 0.96),
    ],
)
def test_documented_calibration_points(inputs, score):
    assert churn_risk(inputs=inputs).score == pytest.approx(score, abs=0.005)


def test_score_is_the_logistic_of_the_weighted_signals():
    w = ChurnWeights()
    inputs = ChurnInputs(
        p_alive=0.4,
        latest_nps=5,
        sentiment=-0.5,
        max_contacts_same_reason=3,
        failed_deliveries=1,
        latest_ces=4,
    )
    z = (
        w.bias
        + w.purchase_rhythm * 0.6
        + w.detractor * 2 / 7
        + w.negative_sentiment * 0.5
        + w.repeated_contacts * 2 / 3
        + w.failed_delivery * 0.5
        + w.high_effort * 0.5
    )
    assert churn_risk(inputs=inputs).score == pytest.approx(1 / (1 + math.exp(-z)))


@given(inputs=inputs_strategy)
def test_score_is_a_probability_and_reasons_are_ranked(inputs):
    risk = churn_risk(inputs=inputs)
    assert 0.0 < risk.score < 1.0
    assert len(risk.reasons) <= 3
    contributions = [r.contribution for r in risk.reasons]
    assert contributions == sorted(contributions, reverse=True)
    assert all(c > 0 for c in contributions)


def worsen(inputs: ChurnInputs, field: str) -> ChurnInputs:
    """The same customer with one signal as bad as it gets."""
    worst = {
        "p_alive": 0.0,
        "latest_nps": 0,
        "sentiment": -1.0,
        "max_contacts_same_reason": 10,
        "failed_deliveries": 5,
        "latest_ces": 5,
    }
    values = {f: getattr(inputs, f) for f in worst}
    values[field] = worst[field]
    return ChurnInputs(**values)


@given(
    inputs=inputs_strategy,
    field=st.sampled_from(
        [
            "p_alive",
            "latest_nps",
            "sentiment",
            "max_contacts_same_reason",
            "failed_deliveries",
            "latest_ces",
        ]
    ),
)
def test_a_worse_signal_never_lowers_the_risk(inputs, field):
    assert churn_risk(inputs=worsen(inputs, field)).score >= churn_risk(inputs=inputs).score


def test_reasons_name_the_biggest_contributors_first():
    risk = churn_risk(
        inputs=ChurnInputs(
            p_alive=0.1, latest_nps=0, max_contacts_same_reason=4, failed_deliveries=1, latest_ces=4
        )
    )
    assert [r.code for r in risk.reasons] == ["purchase_rhythm", "detractor", "repeated_contacts"]
    assert risk.reasons[2].text == "contacted support 4 times about the same problem"
    assert "NPS answer 0" in risk.reasons[1].text


def test_one_support_contact_or_a_passive_is_no_reason():
    risk = churn_risk(inputs=ChurnInputs(latest_nps=8, max_contacts_same_reason=1, latest_ces=3))
    assert risk.reasons == ()


def test_negative_weights_are_refused():
    with pytest.raises(ValueError, match="detractor"):
        ChurnWeights(detractor=-1.0)
