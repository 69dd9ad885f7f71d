"""Alertmanager-style durations (``30s``, ``5m``, ``4h``, ``1h30m``) as ``timedelta``."""

from __future__ import annotations

import re
from datetime import timedelta

# Units must appear largest first and at most once, as in Prometheus, so that "5m30s" is valid
# and ambiguous spellings such as "30s5m" are rejected instead of silently summed.
_UNITS: tuple[tuple[str, timedelta], ...] = (
    ("y", timedelta(days=365)),
    ("w", timedelta(weeks=1)),
    ("d", timedelta(days=1)),
    ("h", timedelta(hours=1)),
    ("m", timedelta(minutes=1)),
    ("s", timedelta(seconds=1)),
    ("ms", timedelta(milliseconds=1)),
)
_PATTERN = re.compile("".join(rf"(?:(?P<{unit}>\d+){unit})?" for unit, _ in _UNITS))


def parse_duration(text: str) -> timedelta:
    """Parse ``text`` such as ``"4h"`` or ``"1h30m"``; ``"0"`` and ``"0s"`` mean zero."""
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string such as '30s' or '5m', got {text!r}")
    stripped = text.strip()
    if stripped == "0":
        return timedelta(0)
    match = _PATTERN.fullmatch(stripped)
    if not stripped or match is None:
        raise ValueError(f"invalid duration {text!r}: use units y, w, d, h, m, s, ms, e.g. '5m'")
    total = timedelta(0)
    for unit, size in _UNITS:
        count = match.group(unit)
        if count is not None:
            total += int(count) * size
    return total


def format_duration(value: timedelta) -> str:
    """Render ``value`` in the same syntax, for explanations and API output."""
    remaining_ms = int(value.total_seconds() * 1000)
    if remaining_ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _UNITS:
        size_ms = int(size.total_seconds() * 1000)
        count, remaining_ms = divmod(remaining_ms, size_ms)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
