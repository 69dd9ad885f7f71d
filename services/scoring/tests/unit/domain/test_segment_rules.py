"""Segment rules from configuration: evaluation, diffs and clear config errors."""

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cxm_scoring.domain.errors import SegmentConfigError
from cxm_scoring.domain.segments import (
    compile_segment_rules,
    diff_segments,
    evaluate_segments,
    segment_changes,
)

CONFIG = yaml.safe_load(
    """
segments:
  - name: VIP at risk
    description: top-20% spenders likely to leave
    all:
      - {field: decile, op: "<=", value: 2}
      - {field: churn_risk, op: ">=", value: 0.6}
  - name: unhappy
    any:
      - {field: nps_latest, op: "<=", value: 6}
      - {not: {field: csat_mean, op: ">=", value: 3}}
  - name: champions
    when: {field: rfm_segment, op: in, value: [champions, loyal]}
  - name: never answered a survey
    when: {field: nps_latest, op: exists, value: false}
"""
)
RULES = compile_segment_rules(CONFIG)


def test_vip_at_risk_needs_both_conditions():
    assert "VIP at risk" in evaluate_segments(
        rules=RULES, snapshot={"decile": 1, "churn_risk": 0.7}
    )
    assert "VIP at risk" not in evaluate_segments(
        rules=RULES, snapshot={"decile": 3, "churn_risk": 0.9}
    )
    assert "VIP at risk" not in evaluate_segments(rules=RULES, snapshot={"decile": 2})


def test_missing_fields_fail_every_test_but_exists_false():
    segments = evaluate_segments(rules=RULES, snapshot={"decile": None})
    # "not csat_mean >= 3" is true for a customer without CSAT: `not` negates the test.
    assert segments == {"never answered a survey", "unhappy"}
    assert evaluate_segments(rules=RULES, snapshot={"nps_latest": 9, "csat_mean": 4.2}) == set()


numbers = st.none() | st.integers(0, 10) | st.floats(0, 10)
snapshots = st.fixed_dictionaries(
    {
        "decile": st.none() | st.integers(1, 10),
        "churn_risk": st.none() | st.floats(0, 1),
        "nps_latest": st.none() | st.integers(0, 10),
        "csat_mean": st.none() | st.floats(1, 5),
        "rfm_segment": st.none() | st.sampled_from(["champions", "loyal", "lost"]),
    }
)


def brute_force(s):
    """The same four rules, written out by hand."""
    out = set()
    if s["decile"] is not None and s["churn_risk"] is not None:
        if s["decile"] <= 2 and s["churn_risk"] >= 0.6:
            out.add("VIP at risk")
    nps_low = s["nps_latest"] is not None and s["nps_latest"] <= 6
    csat_ok = s["csat_mean"] is not None and s["csat_mean"] >= 3
    if nps_low or not csat_ok:
        out.add("unhappy")
    if s["rfm_segment"] in ("champions", "loyal"):
        out.add("champions")
    if s["nps_latest"] is None:
        out.add("never answered a survey")
    return out


@given(snapshot=snapshots)
def test_evaluation_matches_hand_written_rules(snapshot):
    assert evaluate_segments(rules=RULES, snapshot=snapshot) == brute_force(snapshot)


@given(before=snapshots, after=snapshots)
def test_changes_are_the_set_differences(before, after):
    change = segment_changes(rules=RULES, before=before, after=after)
    b, a = brute_force(before), brute_force(after)
    assert change.entered == a - b
    assert change.exited == b - a
    assert bool(change) == (a != b)


def test_diff_between_snapshots():
    change = diff_segments(before=frozenset({"x", "y"}), after=frozenset({"y", "z"}))
    assert change.entered == {"z"}
    assert change.exited == {"x"}
    assert not diff_segments(before=frozenset({"y"}), after=frozenset({"y"}))


def rule(**body):
    return [{"name": "r", **body}]


@pytest.mark.parametrize(
    ("config", "where", "problem"),
    [
        (
            rule(all=[{"field": "decil", "op": "<=", "value": 2}]),
            "segments[0].all[0].field",
            "unknown field 'decil'",
        ),
        (
            rule(all=[{"field": "decile", "op": "=>", "value": 2}]),
            "segments[0].all[0].op",
            "operator '=>' not valid",
        ),
        (
            rule(all=[{"field": "rfm_segment", "op": "<", "value": "x"}]),
            "segments[0].all[0].op",
            "not valid for text field",
        ),
        (
            rule(all=[{"field": "decile", "op": "<=", "value": "2"}]),
            "segments[0].all[0].value",
            "expected a number",
        ),
        (
            rule(all=[{"field": "decile", "op": "<=", "value": True}]),
            "segments[0].all[0].value",
            "expected a number",
        ),
        (rule(all=[{"field": "decile", "op": "<="}]), "segments[0].all[0].value", "missing"),
        (
            rule(all=[{"field": "decile", "op": "in", "value": []}]),
            "segments[0].all[0].value",
            "non-empty list",
        ),
        (
            rule(all=[{"field": "decile", "op": "in", "value": [1, "2"]}]),
            "segments[0].all[0].value[1]",
            "expected a number",
        ),
        (
            rule(all=[{"field": "decile", "op": "exists", "value": 1}]),
            "segments[0].all[0].value",
            "true or false",
        ),
        (
            rule(all=[{"field": "decile", "op": "<", "value": 1, "extra": 1}]),
            "segments[0].all[0]",
            "unknown key(s) extra",
        ),
        (rule(all=[]), "segments[0].all", "non-empty list"),
        (
            rule(any=[{"all": [{"not": "x"}]}]),
            "segments[0].any[0].all[0].not",
            "expected a mapping",
        ),
        (rule(all=[{"all": [], "field": "decile"}]), "segments[0].all[0]", "only key"),
        (rule(), "segments[0]", "exactly one of"),
        (rule(all=[], any=[]), "segments[0]", "exactly one of"),
        (
            rule(when={"field": "decile", "op": "<", "value": 1}, colour="red"),
            "segments[0]",
            "unknown key(s) colour",
        ),
        ([{"name": "", "when": {}}], "segments[0].name", "non-empty string"),
        (
            [{"name": "a", "when": {"field": "decile", "op": "<", "value": 1}}] * 2,
            "segments[1].name",
            "duplicate name 'a'",
        ),
        ({"rules": []}, "<root>", "segments"),
        ("VIP", "segments", "list of rules"),
    ],
)
def test_config_errors_name_the_entry_and_the_problem(config, where, problem):
    with pytest.raises(SegmentConfigError) as excinfo:
        compile_segment_rules(config)
    assert excinfo.value.where == where
    assert problem in excinfo.value.problem


def test_extra_fields_can_be_declared():
    from cxm_scoring.domain.segments import SNAPSHOT_FIELDS, FieldKind

    rules = compile_segment_rules(
        rule(when={"field": "region", "op": "==", "value": "kanto"}),
        fields={**SNAPSHOT_FIELDS, "region": FieldKind.TEXT},
    )
    assert evaluate_segments(rules=rules, snapshot={"region": "kanto"}) == {"r"}
