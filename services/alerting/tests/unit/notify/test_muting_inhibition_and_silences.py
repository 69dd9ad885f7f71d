"""Inhibition rules and silences, both used through the one Muter interface."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from cxm_alerting.notify.alerts import Alert
from cxm_alerting.notify.inhibition import Inhibitor
from cxm_alerting.notify.muting import MuteKind, Muter, mute_stage
from cxm_alerting.notify.silences import Silence, Silencer, SilenceState
from cxm_alerting.routing.tree import InhibitRule, build_tree

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def rules(*configs: Mapping[str, object]) -> tuple[InhibitRule, ...]:
    tree = build_tree(
        {"route": {"receiver": "a"}, "receivers": [{"name": "a"}], "inhibit_rules": list(configs)}
    )
    return tree.inhibit_rules


CHURN_MUTES_FEEDBACK = {
    "source_matchers": ['kind="churn_risk_high"', 'severity="critical"'],
    "target_matchers": ['kind="negative_feedback"', 'severity="warning"'],
    "equal": ["customer_id"],
}


def alert(alert_id: str, resolved_at: datetime | None = None, **labels: str) -> Alert:
    return Alert(
        alert_id=alert_id,
        labels=labels,
        starts_at=NOW - timedelta(hours=1),
        resolved_at=resolved_at,
    )


def test_open_critical_churn_alert_mutes_warning_feedback_for_the_same_customer() -> None:
    churn = alert("churn-1", kind="churn_risk_high", severity="critical", customer_id="c1")
    inhibitor = Inhibitor.build(rules=rules(CHURN_MUTES_FEEDBACK), alerts=[churn])
    feedback = {"kind": "negative_feedback", "severity": "warning", "customer_id": "c1"}

    mute = inhibitor.mutes(labels=feedback, now=NOW)

    assert mute is not None
    assert mute.kind is MuteKind.INHIBITION
    assert mute.ref == "inhibit_rules[0]"
    assert "churn-1" in mute.reason and "c1" not in mute.reason


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ({"kind": "negative_feedback", "severity": "warning", "customer_id": "c2"}, "other"),
        ({"kind": "negative_feedback", "severity": "critical", "customer_id": "c1"}, "critical"),
        ({"kind": "detractor", "severity": "warning", "customer_id": "c1"}, "other kind"),
    ],
)
def test_inhibition_needs_a_matching_target_with_equal_labels(
    target: dict[str, str], why: str
) -> None:
    churn = alert("churn-1", kind="churn_risk_high", severity="critical", customer_id="c1")
    inhibitor = Inhibitor.build(rules=rules(CHURN_MUTES_FEEDBACK), alerts=[churn])

    assert inhibitor.mutes(labels=target, now=NOW) is None, why


def test_resolved_or_non_matching_sources_do_not_inhibit() -> None:
    resolved = alert(
        "churn-1",
        resolved_at=NOW - timedelta(minutes=1),
        kind="churn_risk_high",
        severity="critical",
        customer_id="c1",
    )
    warning_only = alert("churn-2", kind="churn_risk_high", severity="warning", customer_id="c1")
    inhibitor = Inhibitor.build(rules=rules(CHURN_MUTES_FEEDBACK), alerts=[resolved, warning_only])
    feedback = {"kind": "negative_feedback", "severity": "warning", "customer_id": "c1"}

    assert inhibitor.mutes(labels=feedback, now=NOW) is None
    # The same resolved alert still inhibited before it resolved.
    assert inhibitor.mutes(labels=feedback, now=NOW - timedelta(minutes=5)) is not None


def test_equal_treats_labels_missing_on_both_sides_as_equal() -> None:
    rule = {
        "source_matchers": ['kind="a"'],
        "target_matchers": ['kind="b"'],
        "equal": ["region"],
    }
    inhibitor = Inhibitor.build(rules=rules(rule), alerts=[alert("s", kind="a")])

    assert inhibitor.mutes(labels={"kind": "b"}, now=NOW) is not None
    assert inhibitor.mutes(labels={"kind": "b", "region": "kanto"}, now=NOW) is None


def test_alerts_matching_both_sides_do_not_inhibit_each_other() -> None:
    rule = {
        "source_matchers": ['kind="churn_risk_high"'],
        "target_matchers": ['kind="churn_risk_high"', 'severity="warning"'],
        "equal": ["customer_id"],
    }
    both_sided = alert("w1", kind="churn_risk_high", severity="warning", customer_id="c1")
    critical = alert("c1", kind="churn_risk_high", severity="critical", customer_id="c1")

    alone = Inhibitor.build(rules=rules(rule), alerts=[both_sided])
    with_critical = Inhibitor.build(rules=rules(rule), alerts=[both_sided, critical])

    assert alone.mutes(labels=both_sided.labels, now=NOW) is None
    assert with_critical.mutes(labels=both_sided.labels, now=NOW) is not None


def silence(**overrides: object) -> Silence:
    data: dict[str, object] = {
        "id": "sil-1",
        "matchers": ['kind="negative_feedback"', 'channel="store"'],
        "starts_at": NOW - timedelta(hours=1),
        "ends_at": NOW + timedelta(hours=1),
        "created_by": "ops-oncall",
        "comment": "store POS outage, feedback expected",
    }
    data.update(overrides)
    return Silence.model_validate(data)


def test_active_silence_mutes_matching_alerts_only() -> None:
    silencer = Silencer.build(silences=[silence()])

    mute = silencer.mutes(labels={"kind": "negative_feedback", "channel": "store"}, now=NOW)

    assert mute is not None and mute.kind is MuteKind.SILENCE and mute.ref == "sil-1"
    assert silencer.mutes(labels={"kind": "negative_feedback", "channel": "web"}, now=NOW) is None


def test_silence_mutes_only_within_its_time_range() -> None:
    s = silence()
    silencer = Silencer.build(silences=[s])
    labels = {"kind": "negative_feedback", "channel": "store"}

    assert s.state(now=s.starts_at - timedelta(seconds=1)) is SilenceState.PENDING
    assert s.state(now=s.starts_at) is SilenceState.ACTIVE
    assert s.state(now=s.ends_at) is SilenceState.EXPIRED
    assert silencer.mutes(labels=labels, now=s.starts_at - timedelta(seconds=1)) is None
    assert silencer.mutes(labels=labels, now=s.ends_at - timedelta(seconds=1)) is not None
    assert silencer.mutes(labels=labels, now=s.ends_at) is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ends_at": NOW - timedelta(hours=2)}, "ends_at must be after starts_at"),
        ({"matchers": ['segment!="x"']}, "non-empty label value"),
        ({"matchers": ['kind=~"("']}, "invalid regex"),
        ({"comment": ""}, "comment"),
        ({"starts_at": datetime(2025, 1, 1)}, "timezone"),
    ],
)
def test_invalid_silences_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        silence(**overrides)


def test_mute_stage_applies_silences_and_inhibitions_through_one_interface() -> None:
    churn = alert("churn-1", kind="churn_risk_high", severity="critical", customer_id="c1")
    feedback = alert("fb-1", kind="negative_feedback", severity="warning", customer_id="c1")
    store = alert("fb-2", kind="negative_feedback", channel="store", customer_id="c2")
    other = alert("fb-3", kind="negative_feedback", severity="warning", customer_id="c3")
    muters: list[Muter] = [
        Silencer.build(silences=[silence()]),
        Inhibitor.build(rules=rules(CHURN_MUTES_FEEDBACK), alerts=[churn]),
    ]

    result = mute_stage(alerts=[churn, feedback, store, other], muters=muters, now=NOW)

    assert [a.alert_id for a in result.kept] == ["churn-1", "fb-3"]
    assert [(a.alert_id, m.kind) for a, m in result.muted] == [
        ("fb-1", MuteKind.INHIBITION),
        ("fb-2", MuteKind.SILENCE),
    ]
