"""Repeat-interval dedup, group timing, and the mute -> dedup -> record flush plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cxm_alerting.notify.alerts import Alert
from cxm_alerting.notify.dedup import NotificationLogEntry, needs_notification
from cxm_alerting.notify.pipeline import plan_flush, record
from cxm_alerting.notify.silences import Silence, Silencer
from cxm_alerting.notify.timing import flush_due, next_flush_at

T0 = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
REPEAT = timedelta(hours=4)


def entry(
    firing: set[str], resolved: frozenset[str] = frozenset(), at: datetime = T0
) -> NotificationLogEntry:
    return NotificationLogEntry(
        firing=frozenset(firing), resolved=frozenset(resolved), notified_at=at
    )


def decide(
    log: NotificationLogEntry | None,
    firing: set[str],
    resolved: frozenset[str] = frozenset(),
    *,
    now: datetime,
    send_resolved: bool = True,
) -> bool:
    return needs_notification(
        entry=log,
        firing=firing,
        resolved=resolved,
        repeat_interval=REPEAT,
        send_resolved=send_resolved,
        now=now,
    ).notify


def test_first_notification_only_when_something_fires() -> None:
    assert decide(None, {"a"}, now=T0)
    assert not decide(None, set(), frozenset({"a"}), now=T0)


def test_unchanged_firing_set_waits_for_repeat_interval() -> None:
    log = entry({"a", "b"})

    assert not decide(log, {"a", "b"}, now=T0 + timedelta(hours=1))
    assert not decide(log, {"a", "b"}, now=T0 + REPEAT - timedelta(seconds=1))
    assert decide(log, {"a", "b"}, now=T0 + REPEAT)


def test_new_firing_alert_is_notified_at_once_but_a_shrinking_set_is_not() -> None:
    log = entry({"a"})

    assert decide(log, {"a", "b"}, now=T0 + timedelta(minutes=1))
    assert not decide(log, set(), frozenset(), now=T0 + timedelta(minutes=1), send_resolved=False)


def test_resolutions_are_notified_only_for_channels_that_send_them() -> None:
    log = entry({"a", "b"})

    assert decide(log, {"a"}, frozenset({"b"}), now=T0 + timedelta(minutes=1))
    assert not decide(
        log, {"a"}, frozenset({"b"}), now=T0 + timedelta(minutes=1), send_resolved=False
    )
    assert decide(log, set(), frozenset({"a", "b"}), now=T0 + timedelta(minutes=1))
    # Already-notified resolutions are not news.
    assert not decide(
        entry({"a"}, frozenset({"b"})), {"a"}, frozenset({"b"}), now=T0 + timedelta(minutes=1)
    )


def test_group_wait_before_first_flush_then_group_interval() -> None:
    wait, interval = timedelta(seconds=30), timedelta(minutes=5)

    assert (
        next_flush_at(created_at=T0, last_flushed_at=None, group_wait=wait, group_interval=interval)
        == T0 + wait
    )
    assert not flush_due(
        now=T0 + timedelta(seconds=29),
        created_at=T0,
        last_flushed_at=None,
        group_wait=wait,
        group_interval=interval,
    )
    assert flush_due(
        now=T0 + wait, created_at=T0, last_flushed_at=None, group_wait=wait, group_interval=interval
    )
    flushed = T0 + wait
    assert not flush_due(
        now=flushed + timedelta(minutes=4),
        created_at=T0,
        last_flushed_at=flushed,
        group_wait=wait,
        group_interval=interval,
    )
    assert flush_due(
        now=flushed + interval,
        created_at=T0,
        last_flushed_at=flushed,
        group_wait=wait,
        group_interval=interval,
    )


def alert(alert_id: str, resolved_at: datetime | None = None, **labels: str) -> Alert:
    return Alert(alert_id=alert_id, labels=labels, starts_at=T0, resolved_at=resolved_at)


def test_flush_plan_mutes_then_dedups_then_records() -> None:
    silence = Silence.model_validate(
        {
            "id": "s1",
            "matchers": ['channel="store"'],
            "starts_at": T0,
            "ends_at": T0 + timedelta(days=1),
            "created_by": "ops",
            "comment": "store maintenance",
        }
    )
    alerts = [
        alert("a", kind="churn_risk_high"),
        alert("b", kind="negative_feedback", channel="store"),
        alert("c", resolved_at=T0 + timedelta(minutes=1), kind="detractor"),
    ]
    now = T0 + timedelta(minutes=2)
    muters = [Silencer.build(silences=[silence])]

    plan = plan_flush(
        alerts=alerts,
        muters=muters,
        entry=None,
        repeat_interval=REPEAT,
        send_resolved=False,
        now=now,
    )

    assert plan.notify
    assert [a.alert_id for a in plan.firing] == ["a"]
    assert [a.alert_id for a in plan.resolved] == ["c"]
    assert plan.resolved_to_send == ()
    assert [a.alert_id for a, _ in plan.muted] == ["b"]
    assert "1 muted" in plan.reason

    log = record(plan=plan, now=now)
    assert log == NotificationLogEntry(
        firing=frozenset({"a"}), resolved=frozenset({"c"}), notified_at=now
    )
    again = plan_flush(
        alerts=alerts,
        muters=muters,
        entry=log,
        repeat_interval=REPEAT,
        send_resolved=True,
        now=now + timedelta(minutes=5),
    )
    assert not again.notify
    assert "repeat due" in again.reason
