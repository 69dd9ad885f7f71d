"""Delivery retry policy: exponential backoff with full jitter, honouring Retry-After.

Notifiers report a :class:`DeliveryOutcome`; whether it is worth retrying is decided here, in
one place, so webhook and email channels behave the same. Retried: 5xx, 429, timeouts and
connection errors. Never retried: any other 4xx (the request itself is wrong, or the endpoint
is gone, as with 410), since repeating it cannot succeed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime


class TransportError(enum.StrEnum):
    TIMEOUT = "timeout"
    CONNECTION = "connection"


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one delivery attempt produced: an HTTP response or a transport error."""

    status_code: int | None = None
    retry_after: str | None = None  # the raw Retry-After header, if any
    error: TransportError | None = None

    @classmethod
    def response(cls, status_code: int, *, retry_after: str | None = None) -> DeliveryOutcome:
        return cls(status_code=status_code, retry_after=retry_after)

    @classmethod
    def timeout(cls) -> DeliveryOutcome:
        return cls(error=TransportError.TIMEOUT)

    @classmethod
    def connection_error(cls) -> DeliveryOutcome:
        return cls(error=TransportError.CONNECTION)

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        if self.error is not None:
            return True
        if self.status_code is None:
            return False
        return self.status_code == 429 or 500 <= self.status_code < 600

    def describe(self) -> str:
        return str(self.error) if self.error is not None else f"HTTP {self.status_code}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(seconds=60)
    max_attempts: int = 6
    # Alerts are worth little hours late: a receiver asking us to wait longer than this is
    # treated as a failure (so it can be surfaced) rather than parked indefinitely.
    max_retry_after: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    delay: timedelta | None
    reason: str


def decide_retry(
    *,
    outcome: DeliveryOutcome,
    attempt: int,
    policy: RetryPolicy,
    now: datetime,
    rand: Callable[[], float],
) -> RetryDecision:
    """Decide after attempt number ``attempt`` (1 = the first try) produced ``outcome``.

    ``rand`` returns a float in [0, 1); inject ``random.Random(seed).random`` in tests.
    """
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    what = outcome.describe()
    if outcome.succeeded:
        return RetryDecision(False, None, f"delivered ({what})")
    if not outcome.retryable:
        return RetryDecision(False, None, f"not retryable ({what})")
    if attempt >= policy.max_attempts:
        return RetryDecision(False, None, f"gave up after {attempt} attempts ({what})")
    if outcome.retry_after is not None:
        requested = parse_retry_after(outcome.retry_after, now=now)
        if requested is not None:
            if requested > policy.max_retry_after:
                return RetryDecision(False, None, f"Retry-After {requested} exceeds limit ({what})")
            return RetryDecision(True, requested, f"retry as asked by Retry-After ({what})")
    return RetryDecision(True, backoff(attempt=attempt, policy=policy, rand=rand), f"{what}")


def backoff(*, attempt: int, policy: RetryPolicy, rand: Callable[[], float]) -> timedelta:
    """Full jitter: uniform in [0, min(max_delay, base * 2**(attempt-1))).

    Full jitter spreads the retries of many failed deliveries instead of having them hit a
    recovering receiver in lock-step.
    """
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** min(attempt - 1, 30))
    return ceiling * rand()


def parse_retry_after(value: str, *, now: datetime) -> timedelta | None:
    """Retry-After as delay-seconds or an HTTP date; ``None`` when unparseable."""
    text = value.strip()
    if text.isdigit():
        return timedelta(seconds=int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # RFC 9110 dates are always GMT; a zone-less date is not one of them
    return max(when - now, timedelta(0))
