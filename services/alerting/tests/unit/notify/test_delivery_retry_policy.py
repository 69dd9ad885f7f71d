"""Retry decisions for webhook/email delivery outcomes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from cxm_alerting.notify.retry import (
    DeliveryOutcome,
    RetryDecision,
    RetryPolicy,
    backoff,
    decide_retry,
    parse_retry_after,
)

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(
    base_delay=timedelta(seconds=1),
    max_delay=timedelta(seconds=30),
    max_attempts=5,
    max_retry_after=timedelta(minutes=10),
)


def decide(outcome: DeliveryOutcome, attempt: int = 1, rand: float = 0.5) -> RetryDecision:
    return decide_retry(outcome=outcome, attempt=attempt, policy=POLICY, now=NOW, rand=lambda: rand)


@pytest.mark.parametrize(
    "outcome",
    [
        DeliveryOutcome.response(500),
        DeliveryOutcome.response(502),
        DeliveryOutcome.response(503),
        DeliveryOutcome.response(429),
        DeliveryOutcome.timeout(),
        DeliveryOutcome.connection_error(),
    ],
    ids=["500", "502", "503", "429", "timeout", "connection"],
)
def test_server_errors_throttling_and_transport_errors_are_retried(
    outcome: DeliveryOutcome,
) -> None:
    decision = decide(outcome, attempt=1, rand=0.5)

    assert decision.retry
    assert decision.delay == timedelta(seconds=0.5)  # half of the 1s first-attempt ceiling


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_other_client_errors_are_never_retried(status: int) -> None:
    decision = decide(DeliveryOutcome.response(status, retry_after="1"))

    assert not decision.retry and decision.delay is None
    assert f"HTTP {status}" in decision.reason


def test_success_is_not_retried() -> None:
    assert not decide(DeliveryOutcome.response(204)).retry
    assert DeliveryOutcome.response(200).succeeded


def test_gives_up_after_max_attempts() -> None:
    assert decide(DeliveryOutcome.response(503), attempt=4).retry
    final = decide(DeliveryOutcome.response(503), attempt=5)

    assert not final.retry
    assert "gave up after 5 attempts" in final.reason


def test_backoff_ceiling_doubles_and_is_capped() -> None:
    def ceiling(attempt: int) -> timedelta:
        return backoff(attempt=attempt, policy=POLICY, rand=lambda: 0.999999)

    assert [round(ceiling(n).total_seconds()) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff(attempt=3, policy=POLICY, rand=lambda: 0.0) == timedelta(0)
    # Huge attempt numbers must not overflow.
    assert backoff(attempt=10_000, policy=POLICY, rand=lambda: 0.5) == timedelta(seconds=15)


def test_full_jitter_spreads_delays_with_a_seeded_source() -> None:
    rng = random.Random(42)
    delays = [
        decide_retry(
            outcome=DeliveryOutcome.response(503),
            attempt=4,
            policy=POLICY,
            now=NOW,
            rand=rng.random,
        ).delay
        for _ in range(20)
    ]

    assert all(d is not None and timedelta(0) <= d < timedelta(seconds=8) for d in delays)
    assert len(set(delays)) == 20


def test_429_with_retry_after_seconds_is_honoured() -> None:
    decision = decide(DeliveryOutcome.response(429, retry_after="120"), rand=0.1)

    assert decision.retry and decision.delay == timedelta(seconds=120)


def test_503_with_retry_after_http_date_is_honoured() -> None:
    when = format_datetime(NOW + timedelta(seconds=90), usegmt=True)

    decision = decide(DeliveryOutcome.response(503, retry_after=when))

    assert decision.retry and decision.delay == timedelta(seconds=90)


def test_retry_after_longer_than_the_limit_gives_up() -> None:
    decision = decide(DeliveryOutcome.response(429, retry_after="3600"))

    assert not decision.retry
    assert "exceeds limit" in decision.reason


def test_unparseable_retry_after_falls_back_to_backoff() -> None:
    decision = decide(DeliveryOutcome.response(429, retry_after="soon"), attempt=2, rand=0.5)

    assert decision.retry and decision.delay == timedelta(seconds=1)


def test_parse_retry_after() -> None:
    assert parse_retry_after(" 7 ", now=NOW) == timedelta(seconds=7)
    assert parse_retry_after("Tue, 04 Mar 2025 11:00:00 GMT", now=NOW) == timedelta(0)
    assert parse_retry_after("Tue, 04 Mar 2025 12:00:30 GMT", now=NOW) == timedelta(seconds=30)
    assert parse_retry_after("-5", now=NOW) is None
    assert parse_retry_after("", now=NOW) is None


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        decide(DeliveryOutcome.response(500), attempt=0)
