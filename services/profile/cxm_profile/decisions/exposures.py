"""Experiment exposures: each decision that assigns a variant becomes an `experiment_exposure`
touchpoint on the raw touchpoints topic, so it is resolved, timelined and scored like any
other event and the experiment analysis can join it to the customer's later outcomes.

- Idempotent: the event id is fixed by (experiment, customer, UTC day). A customer who loads
  the page fifty times in a day is one exposure that day, whichever worker answered and
  however often it restarted (the resolver and the scorer both deduplicate by event id).
  A day, not the experiment's lifetime, so the exposure stream still shows that the customer
  kept seeing the variant, and a lost send is repeated by the next day's first decision at
  the latest.
- Off the request path: the route hands the message to a background send and answers; this
  process also remembers the event ids it already sent (bounded), so repeated decisions do
  not even reach Kafka.
- Never lost silently: a send that Kafka does not acknowledge is counted
  (`cxm_profile_experiment_exposures_total{outcome="failed"}`), logged (experiment id only)
  and forgotten, so the customer's next decision sends it again. Shutdown waits for the
  sends in flight.
- No raw personal data: the event names the customer's identifier by its keyed hash
  (identity.identifiers.keyed), never by the email or phone the caller looked up.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from cxm_profile import metrics
from cxm_profile.decisions.rules import Decision
from cxm_shared.events import Touchpoint, encode
from cxm_shared.topics import Topics

log = logging.getLogger(__name__)

EXPOSURE_TYPE = "experiment_exposure"
SOURCE = "profile-decisions"


def _day(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


def exposure_event_id(*, experiment_id: str, customer_id: str, day: str) -> str:
    digest = hashlib.sha256(f"{experiment_id}\x1f{customer_id}\x1f{day}".encode()).hexdigest()
    return f"exposure-{digest[:40]}"


def exposure_touchpoint(
    *,
    decision: Decision,
    customer_id: str,
    identifiers: dict[str, str],
    channel: str,
    at: datetime,
) -> Touchpoint:
    assert decision.experiment_id is not None and decision.variant is not None
    return Touchpoint(
        event_id=exposure_event_id(
            experiment_id=decision.experiment_id,
            customer_id=customer_id,
            day=_day(at),
        ),
        type=EXPOSURE_TYPE,
        channel=channel,
        touchpoint=decision.placement,
        occurred_at=at,
        received_at=at,
        source=SOURCE,
        identifiers=identifiers,
        properties={"placement": decision.placement, "content_id": decision.content.id},
        context={"experiment": {"id": decision.experiment_id, "variant": decision.variant}},
    )


class ExposureLog:
    """Sends exposures in the background; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        producer: Callable[[], AIOKafkaProducer],
        topics: Topics,
        remember: int = 100_000,
        max_in_flight: int = 10_000,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._remember = remember
        self._max_in_flight = max_in_flight
        self._sent: OrderedDict[str, None] = OrderedDict()  # sent or being sent
        self._in_flight: set[asyncio.Task[None]] = set()

    def record(
        self,
        *,
        decision: Decision,
        customer_id: str,
        identifiers: dict[str, str],
        channel: str,
        at: datetime,
    ) -> str:
        """Schedule the exposure of `decision` (which assigned a variant); its event id."""
        assert decision.experiment_id is not None
        event_id = exposure_event_id(
            experiment_id=decision.experiment_id, customer_id=customer_id, day=_day(at)
        )
        if event_id in self._sent:
            self._sent.move_to_end(event_id)
            metrics.EXPOSURES.labels(outcome="repeated").inc()
            return event_id
        if len(self._in_flight) >= self._max_in_flight:
            metrics.EXPOSURES.labels(outcome="dropped").inc()
            log.warning(
                "exposure dropped: too many sends in flight experiment=%s in_flight=%d",
                decision.experiment_id,
                len(self._in_flight),
            )
            return event_id
        touchpoint = exposure_touchpoint(
            decision=decision,
            customer_id=customer_id,
            identifiers=identifiers,
            channel=channel,
            at=at,
        )
        self._sent[event_id] = None
        if len(self._sent) > self._remember:
            self._sent.popitem(last=False)
        task = asyncio.create_task(self._send(touchpoint, customer_id))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return event_id

    async def _send(self, touchpoint: Touchpoint, customer_id: str) -> None:
        try:
            acknowledged = await self._producer().send(
                self._topics.touchpoints, key=customer_id.encode(), value=encode(touchpoint)
            )
            await acknowledged
        except Exception as error:  # any failure: counted, and resent by a later decision
            self._sent.pop(touchpoint.event_id, None)
            metrics.EXPOSURES.labels(outcome="failed").inc()
            experiment = touchpoint.context["experiment"]["id"]
            log.warning(
                "exposure not sent experiment=%s error=%s", experiment, type(error).__name__
            )
            return
        metrics.EXPOSURES.labels(outcome="sent").inc()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def close(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for the sends in flight; what is left is counted as failed."""
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(set(self._in_flight), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            metrics.EXPOSURES.labels(outcome="failed").inc(len(pending))
            log.warning("exposures still unsent at shutdown count=%d", len(pending))
