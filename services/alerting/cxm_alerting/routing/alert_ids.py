"""Deterministic alert ids: one alert per (kind, customer, time window).

A signal re-delivered by Kafka, or raised again by the same rule within the window, maps to
the same id, so the alert store upserts instead of opening a duplicate alert.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

# Fixed namespace so ids are stable across processes, hosts and releases. Never change it:
# doing so would re-key every open alert.
ALERT_ID_NAMESPACE = uuid.UUID("6f1d3c2a-8b7e-5d4c-9a0b-1c2d3e4f5a6b")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_start(*, at: datetime, window: timedelta) -> datetime:
    """Start of the fixed window (aligned to the Unix epoch, UTC) that contains ``at``."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    if window <= timedelta(0):
        raise ValueError("window must be positive")
    window_us = _micros(window)
    elapsed_us = _micros(at - _EPOCH)
    return _EPOCH + timedelta(microseconds=elapsed_us - elapsed_us % window_us)


def alert_id(*, kind: str, customer_id: str, window_start: datetime) -> str:
    """UUIDv5 of (kind, customer_id, window start); same inputs, same id, everywhere."""
    if window_start.tzinfo is None:
        raise ValueError("window_start must be timezone-aware")
    # Epoch microseconds rather than isoformat(): the same instant in another timezone must
    # give the same id. The unit separator cannot occur in kinds or ids from our schemas.
    name = "\x1f".join((kind, customer_id, str(_micros(window_start - _EPOCH))))
    return str(uuid.uuid5(ALERT_ID_NAMESPACE, name))


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
