"""Aggregation-group timing.

A new group waits ``group_wait`` before its first notification, so alerts that arrive together
(one customer's churn risk and a detractor survey) go out in one message. After that the group
is flushed at most once per ``group_interval``; dedup decides whether a flush sends anything.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def next_flush_at(
    *,
    created_at: datetime,
    last_flushed_at: datetime | None,
    group_wait: timedelta,
    group_interval: timedelta,
) -> datetime:
    if last_flushed_at is None:
        return created_at + group_wait
    return last_flushed_at + group_interval


def flush_due(
    *,
    now: datetime,
    created_at: datetime,
    last_flushed_at: datetime | None,
    group_wait: timedelta,
    group_interval: timedelta,
) -> bool:
    due = next_flush_at(
        created_at=created_at,
        last_flushed_at=last_flushed_at,
        group_wait=group_wait,
        group_interval=group_interval,
    )
    return now >= due
