"""Escalation: an alert not acknowledged within its receiver's ``ack_sla`` moves up the chain.

Each receiver's SLA runs from the moment the alert reached it. If the service was down while
several SLAs expired, the alert goes straight to the receiver it would have reached by now,
and every breach on the way is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


class Escalatable(Protocol):
    """What escalation needs from a receiver (``ReceiverConfig`` satisfies it)."""

    @property
    def ack_sla(self) -> timedelta | None: ...

    @property
    def escalate_to(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class SlaBreach:
    receiver: str
    deadline: datetime


@dataclass(frozen=True, slots=True)
class EscalationDecision:
    receiver: str  # who should hold the alert now
    assigned_at: datetime  # when it reached that receiver (its SLA clock start)
    breaches: tuple[SlaBreach, ...]
    next_deadline: datetime | None  # when the current holder's SLA runs out, if it has one

    @property
    def escalate(self) -> bool:
        return bool(self.breaches) and self.breaches[0].receiver != self.receiver


def sla_deadline(*, assigned_at: datetime, ack_sla: timedelta | None) -> datetime | None:
    return None if ack_sla is None else assigned_at + ack_sla


def sla_breached(
    *, assigned_at: datetime, ack_sla: timedelta | None, acked_at: datetime | None, now: datetime
) -> bool:
    """True when acknowledgement came (or is still missing) after the deadline."""
    deadline = sla_deadline(assigned_at=assigned_at, ack_sla=ack_sla)
    if deadline is None:
        return False
    answered = acked_at if acked_at is not None and acked_at <= now else now
    return answered > deadline


def decide_escalation(
    *,
    receiver: str,
    assigned_at: datetime,
    acked_at: datetime | None,
    receivers: Mapping[str, Escalatable],
    now: datetime,
) -> EscalationDecision:
    """Where an open alert held by ``receiver`` since ``assigned_at`` should be now."""
    if acked_at is not None and acked_at <= now:
        return EscalationDecision(receiver, assigned_at, (), None)
    current, since = receiver, assigned_at
    breaches: list[SlaBreach] = []
    visited = {current}
    while True:
        config = receivers[current]
        deadline = sla_deadline(assigned_at=since, ack_sla=config.ack_sla)
        if deadline is None or now <= deadline:
            return EscalationDecision(current, since, tuple(breaches), deadline)
        breaches.append(SlaBreach(receiver=current, deadline=deadline))
        target = config.escalate_to
        # The end of the chain keeps the alert; the loader rejects cycles, the visited set is
        # only a guard for hand-built mappings.
        if target is None or target in visited:
            return EscalationDecision(current, since, tuple(breaches), None)
        visited.add(target)
        current, since = target, deadline
