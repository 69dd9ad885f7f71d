"""Routing tree behaviour from YAML fixtures: where alerts go, inheritance, validation errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cxm_alerting.routing.durations import format_duration
from cxm_alerting.routing.errors import RoutingConfigError
from cxm_alerting.routing.match import explain, match
from cxm_alerting.routing.tree import RoutingTree, build_tree, load_tree

FIXTURES = Path(__file__).parents[1] / "fixtures" / "routing"
CASES: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "cases.yaml").read_text())
INVALID: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "invalid.yaml").read_text())


@pytest.fixture(scope="module")
def tree() -> RoutingTree:
    return load_tree((FIXTURES / "tree.yaml").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_alert_reaches_expected_routes(tree: RoutingTree, case: dict[str, Any]) -> None:
    matches = match(tree, case["labels"])

    assert [m.route.path for m in matches] == case["routes"]
    assert [m.receiver for m in matches] == case["receivers"]
    for found, expected in zip(matches, case.get("settings", []), strict=False):
        route = found.route
        actual = {
            "group_wait": format_duration(route.group_wait),
            "group_interval": format_duration(route.group_interval),
            "repeat_interval": format_duration(route.repeat_interval),
            "group_by": ["..."] if route.group_by_all else list(route.group_by),
        }
        assert {key: actual[key] for key in expected} == expected


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_invalid_configuration_names_the_bad_field(case: dict[str, Any]) -> None:
    with pytest.raises(RoutingConfigError) as caught:
        build_tree(case["config"])

    messages = [str(issue) for issue in caught.value.issues]
    for expected in case["errors"]:
        assert any(expected in message for message in messages), messages


def test_the_fixture_tree_is_valid_and_complete(tree: RoutingTree) -> None:
    assert len(CASES) >= 10
    assert set(tree.receivers) >= {"cx-ops", "retention", "retention-lead", "analytics"}
    assert len(tree.inhibit_rules) == 1
    assert len(tree.walk()) == 9


def test_explanation_says_which_matcher_rejected_and_where_it_stopped(tree: RoutingTree) -> None:
    labels = {"kind": "negative_feedback", "channel": "app", "severity": "info"}

    explanation = explain(tree, labels)

    visits = {visit.path: visit for visit in explanation.visits}
    digital = visits["route.routes[3].routes[1]"]
    assert not digital.matched
    assert [(v.matcher, v.accepted) for v in digital.verdicts] == [
        ('channel=~"web|app"', True),
        ('severity!="info"', False),
    ]
    assert 'severity!="info"' in digital.note
    assert "no child matched" in visits["route.routes[3]"].note
    # The first route's regex rejected a label the alert does not carry.
    blackhole = visits["route.routes[0]"].verdicts[0]
    assert blackhole.value is None and not blackhole.accepted
    assert explanation.receivers == ["cx-ops"]
    assert explanation.as_dict()["matches"][0]["via"] == ["route", "route.routes[3]"]


def test_explanation_lists_siblings_not_evaluated_after_a_final_match(tree: RoutingTree) -> None:
    explanation = explain(tree, {"kind": "churn_risk_high", "segment": "test_x"})

    evaluated = [visit.path for visit in explanation.visits]
    assert evaluated == ["route", "route.routes[0]"]
    assert "3 later sibling(s) not evaluated" in explanation.visits[0].note


def test_continue_on_the_last_match_still_returns_the_parent_only_when_nothing_matched() -> None:
    tree = build_tree(
        {
            "route": {
                "receiver": "root",
                "routes": [
                    {"receiver": "a", "matchers": ['team="x"'], "continue": True},
                    {"receiver": "b", "matchers": ['team="x"'], "continue": True},
                ],
            },
            "receivers": [{"name": "root"}, {"name": "a"}, {"name": "b"}],
        }
    )

    assert [m.receiver for m in match(tree, {"team": "x"})] == ["a", "b"]
    assert [m.receiver for m in match(tree, {"team": "y"})] == ["root"]


def test_yaml_syntax_errors_are_config_errors() -> None:
    with pytest.raises(RoutingConfigError, match="<yaml>"):
        load_tree("route: [unclosed")
    with pytest.raises(RoutingConfigError, match="expected a mapping"):
        load_tree("- just a list")


def test_root_defaults_follow_alertmanager() -> None:
    tree = build_tree({"route": {"receiver": "a"}, "receivers": [{"name": "a"}]})

    root = tree.root
    assert (root.group_wait.total_seconds(), root.group_interval.total_seconds()) == (30, 300)
    assert root.repeat_interval.total_seconds() == 4 * 3600
    assert root.group_by == () and not root.group_by_all
