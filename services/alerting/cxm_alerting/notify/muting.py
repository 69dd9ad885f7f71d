"""One interface for everything that mutes an alert: inhibition rules and silences.

Both answer "does something mute these labels now, and what?", so the mute stage need not know
which kind of muter it holds, and the answer names its cause for the notification record.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cxm_alerting.notify.alerts import Alert


class MuteKind(enum.StrEnum):
    SILENCE = "silence"
    INHIBITION = "inhibition"


@dataclass(frozen=True, slots=True)
class Mute:
    kind: MuteKind
    ref: str  # silence id, or "inhibit_rules[0]"
    reason: str  # human-readable; names ids only, never label values such as customer ids


class Muter(Protocol):
    def mutes(self, *, labels: Mapping[str, str], now: datetime) -> Mute | None: ...


@dataclass(frozen=True, slots=True)
class MuteResult:
    kept: tuple[Alert, ...]
    muted: tuple[tuple[Alert, Mute], ...]


def mute_stage(*, alerts: Iterable[Alert], muters: Sequence[Muter], now: datetime) -> MuteResult:
    """Split ``alerts`` into those to notify and those muted (with the first muter's reason)."""
    kept: list[Alert] = []
    muted: list[tuple[Alert, Mute]] = []
    for alert in alerts:
        mute = first_mute(labels=alert.labels, muters=muters, now=now)
        if mute is None:
            kept.append(alert)
        else:
            muted.append((alert, mute))
    return MuteResult(kept=tuple(kept), muted=tuple(muted))


def first_mute(*, labels: Mapping[str, str], muters: Sequence[Muter], now: datetime) -> Mute | None:
    for muter in muters:
        mute = muter.mutes(labels=labels, now=now)
        if mute is not None:
            return mute
    return None
