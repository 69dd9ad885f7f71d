"""Alertmanager matcher syntax and duration parsing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cxm_alerting.routing.durations import format_duration, parse_duration
from cxm_alerting.routing.errors import MatcherSyntaxError
from cxm_alerting.routing.matchers import MatchOp, parse_matcher


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('kind="churn_risk_high"', {"kind": "churn_risk_high"}, True),
        ('kind="churn_risk_high"', {"kind": "churn_risk"}, False),
        ('severity=~"critical|warning"', {"severity": "warning"}, True),
        ('severity=~"crit"', {"severity": "critical"}, False),  # anchored
        ('channel!="web"', {"channel": "web"}, False),
        ('channel!="web"', {}, True),  # missing label is ""
        ('segment!~"test.*"', {"segment": "test_a"}, False),
        ('segment!~"test.*"', {"segment": "my_test"}, True),  # anchored at the start too
        ('region=""', {}, True),
        ("severity=critical", {"severity": "critical"}, True),  # unquoted value
        ('  kind = "a b" ', {"kind": "a b"}, True),
        (r'kind="say \"hi\""', {"kind": 'say "hi"'}, True),
        (r'region=~"\d{2}"', {"region": "13"}, True),
    ],
)
def test_matcher_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_matcher_renders_back_to_parseable_text() -> None:
    original = parse_matcher(r'kind=~"a\"b|c\\d"')

    reparsed = parse_matcher(str(original))

    assert (reparsed.name, reparsed.op, reparsed.value) == ("kind", MatchOp.REGEX, r'a"b|c\d')
    assert reparsed == original


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('kind=="x"', "invalid matcher"),
        ('kind="x', "invalid matcher"),
        ('kind~"x"', "invalid matcher"),
        ('kind="x" extra', "invalid matcher"),
        ('tier="gold"', "unknown label 'tier'"),
        ('kind=~"[a-"', "invalid regex"),
    ],
)
def test_bad_matchers_are_rejected_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(MatcherSyntaxError, match=message):
        parse_matcher(text)


def test_any_label_name_is_accepted_when_asked() -> None:
    assert parse_matcher('tier="gold"', known_labels=None).matches({"tier": "gold"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("4h", timedelta(hours=4)),
        ("1h30m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("500ms", timedelta(milliseconds=500)),
        ("0", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5x", "30s5m", "-5m", "1.5h", "4hours"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for text in ["30s", "5m", "4h", "1h30m", "1d2h", "500ms", "0s"]:
        assert format_duration(parse_duration(text)) == text
