"""Deduplication against the notification log (Alertmanager's DedupStage).

A group is re-notified when its firing set gains an alert, when alerts resolve (if the
channel sends resolutions), or when ``repeat_interval`` has passed since the last notification
of a still-firing set; otherwise the flush is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class NotificationLogEntry:
    """What was last sent for one (group, receiver, channel)."""

    firing: frozenset[str]
    resolved: frozenset[str]
    notified_at: datetime


@dataclass(frozen=True, slots=True)
class DedupDecision:
    notify: bool
    reason: str


def needs_notification(
    *,
    entry: NotificationLogEntry | None,
    firing: Iterable[str],
    resolved: Iterable[str],
    repeat_interval: timedelta,
    send_resolved: bool,
    now: datetime,
) -> DedupDecision:
    firing_ids = frozenset(firing)
    resolved_ids = frozenset(resolved)
    if entry is None:
        if firing_ids:
            return DedupDecision(True, "first notification for this group")
        return DedupDecision(False, "nothing firing and nothing notified before")
    new = firing_ids - entry.firing
    if new:
        return DedupDecision(True, f"{len(new)} new firing alert(s)")
    if not firing_ids:
        # Everything resolved. Without send_resolved the log is still updated by the caller,
        # so a later re-fire counts as new.
        if entry.firing and send_resolved:
            return DedupDecision(True, "all alerts resolved")
        return DedupDecision(False, "all alerts resolved; channel does not send resolutions")
    if send_resolved and not resolved_ids <= entry.resolved:
        return DedupDecision(True, f"{len(resolved_ids - entry.resolved)} alert(s) resolved")
    due = entry.notified_at + repeat_interval
    if now >= due:
        return DedupDecision(True, "repeat_interval elapsed")
    return DedupDecision(False, f"already notified; repeat due at {due.isoformat()}")
