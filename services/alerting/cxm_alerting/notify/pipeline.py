"""The flush decision for one (group, receiver, channel): mute -> dedup -> record.

Delivery and its retries happen between "decide" and "record" in the service; see
:mod:`cxm_alerting.notify.retry`. Every plan carries its reasons so the decision can be stored
next to the alert ("every routing decision is recorded").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cxm_alerting.notify.alerts import Alert
from cxm_alerting.notify.dedup import NotificationLogEntry, needs_notification
from cxm_alerting.notify.muting import Mute, Muter, mute_stage


@dataclass(frozen=True, slots=True)
class FlushPlan:
    notify: bool
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    muted: tuple[tuple[Alert, Mute], ...]
    send_resolved: bool
    reason: str

    @property
    def resolved_to_send(self) -> tuple[Alert, ...]:
        """Resolved alerts to include in the message (none when the channel omits them)."""
        return self.resolved if self.send_resolved else ()


def plan_flush(
    *,
    alerts: Iterable[Alert],
    muters: Sequence[Muter],
    entry: NotificationLogEntry | None,
    repeat_interval: timedelta,
    send_resolved: bool,
    now: datetime,
) -> FlushPlan:
    muting = mute_stage(alerts=alerts, muters=muters, now=now)
    firing = tuple(a for a in muting.kept if a.is_firing(now=now))
    resolved = tuple(a for a in muting.kept if not a.is_firing(now=now))
    decision = needs_notification(
        entry=entry,
        firing=(a.alert_id for a in firing),
        resolved=(a.alert_id for a in resolved),
        repeat_interval=repeat_interval,
        send_resolved=send_resolved,
        now=now,
    )
    reason = decision.reason
    if muting.muted:
        reason += f"; {len(muting.muted)} muted"
    return FlushPlan(
        notify=decision.notify,
        firing=firing,
        resolved=resolved,
        muted=muting.muted,
        send_resolved=send_resolved,
        reason=reason,
    )


def record(*, plan: FlushPlan, now: datetime) -> NotificationLogEntry:
    """The log entry to store once the plan's notification has been delivered.

    Resolved alerts are recorded even when the channel did not send them, so they are not
    news at the next flush.
    """
    return NotificationLogEntry(
        firing=frozenset(a.alert_id for a in plan.firing),
        resolved=frozenset(a.alert_id for a in plan.resolved),
        notified_at=now,
    )
