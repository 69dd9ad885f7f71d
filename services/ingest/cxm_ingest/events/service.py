"""Turning posted events into Touchpoints on Kafka: validate, normalise, dedup, key, publish.

Dedup: accepted event ids are recorded in ``ingest.accepted_events`` *after* Kafka acked
them, and every request checks its ids there first (one query per request), so a client's
retry of an acknowledged event is answered ``duplicate`` and not produced again. Recording
after the ack means a crash can never leave an id recorded whose event is not on Kafka; the
worst a crash between ack and record does is let a later retry be produced a second time,
and consumers (profile) dedup by ``event_id`` in their own transaction, so it is still
counted once. Ids are kept ``dedup_window_days`` (>= 7; Segment clients retry for up to 12 h).
When PostgreSQL is unreachable ingest keeps accepting (dedup then relies on consumers only)
rather than refusing data whose durable home, Kafka, is fine.

Keying: the Kafka key is a hash of the strongest person-level identifier present, in the
order user_id, loyalty_id, email, phone, then device-level device_id, cookie_id,
anonymous_id. Person-level ids are the same on every device, so a known customer's events
from web, app, store and call center share a partition and stay in order; anonymous events
fall back to the device so one device's journey stays in order. The key is a SHA-256 of
``type:value`` (email and phone lower-cased/trimmed) so no personal data sits in Kafka keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cxm_ingest import metrics
from cxm_ingest.auth import Source
from cxm_ingest.errors import KafkaUnavailable
from cxm_ingest.events.schemas import PROPERTIES_BY_TYPE, NativeEvent
from cxm_ingest.events.segment import SegmentRejected
from cxm_shared.kafka import make_producer

log = logging.getLogger(__name__)

KEY_PRIORITY = (
    "user_id",
    "loyalty_id",
    "email",
    "phone",
    "device_id",
    "cookie_id",
    "anonymous_id",
)
MAX_DEPTH = 10
MAX_KEY_CHARS = 256
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


class EventRejected(ValueError):
    def __init__(self, reason: str, errors: list[dict[str, str]]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.errors = errors


@dataclass(slots=True)
class Outcome:
    index: int
    event_id: str | None
    status: str  # accepted | duplicate | rejected
    reason: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "event_id": self.event_id,
            "status": self.status,
        }
        if self.status == "rejected":
            out["reason"] = self.reason
            out["errors"] = self.errors
        return out


@dataclass(slots=True)
class Candidate:
    index: int
    event_id: str
    key: bytes
    value: bytes


def _loc(parts: tuple[Any, ...], prefix: str = "") -> str:
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    return [
        {"loc": _loc(tuple(e["loc"]), prefix), "msg": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)[:20]
    ]


def _free_value_problem(value: Any, loc: str, depth: int) -> dict[str, str] | None:
    """Bounds on free-form JSON (traits, properties, context): depth, NUL, key size."""
    if depth > MAX_DEPTH:
        return {"loc": loc, "msg": f"nested deeper than {MAX_DEPTH} levels"}
    if isinstance(value, str):
        if "\x00" in value:
            return {"loc": loc, "msg": "contains a NUL character"}
    elif isinstance(value, dict):
        for k, v in value.items():
            if len(k) > MAX_KEY_CHARS or "\x00" in k:
                return {"loc": loc, "msg": "has a key longer than 256 characters or with NUL"}
            problem = _free_value_problem(v, f"{loc}.{k}", depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for i, v in enumerate(value):
            problem = _free_value_problem(v, f"{loc}[{i}]", depth + 1)
            if problem:
                return problem
    return None


def partition_key(identifiers: dict[str, str]) -> bytes:
    for name in KEY_PRIORITY:
        value = identifiers.get(name)
        if value:
            if name in ("email", "phone"):
                value = value.strip().lower()
            return hashlib.sha256(f"{name}:{value}".encode()).hexdigest()[:32].encode()
    raise AssertionError("validated events always carry an identifier")


def normalise(
    raw: Any,
    *,
    source: Source,
    received_at: datetime,
    max_future: timedelta,
    prefix: str = "",
) -> tuple[dict[str, Any], bytes]:
    """The Touchpoint (as its JSON dict) and Kafka key of one native-shaped event."""
    if not isinstance(raw, dict):
        raise EventRejected("schema", [{"loc": prefix, "msg": "must be an object"}])
    try:
        event = NativeEvent.model_validate(raw)
    except ValidationError as exc:
        raise EventRejected("schema", validation_errors(exc, prefix)) from None
    props_model = PROPERTIES_BY_TYPE.get(event.type)
    if props_model is not None:
        try:
            props_model.model_validate(event.properties)
        except ValidationError as exc:
            raise EventRejected(
                "schema", validation_errors(exc, _loc(("properties",), prefix))
            ) from None
    for name in ("traits", "properties"):
        problem = _free_value_problem(raw.get(name), _loc((name,), prefix), 1)
        if problem:
            raise EventRejected("schema", [problem])
    problem = _free_value_problem(raw.get("context"), _loc(("context",), prefix), 1)
    if problem:
        raise EventRejected("schema", [problem])
    occurred = event.occurred_at.astimezone(UTC)
    if occurred > received_at + max_future or occurred < EARLIEST:
        raise EventRejected(
            "schema",
            [
                {
                    "loc": _loc(("occurred_at",), prefix),
                    "msg": "out of range (future or before 2000)",
                }
            ],
        )
    identifiers = event.identifiers.model_dump(exclude_none=True)
    touchpoint = {
        "schema_version": 1,
        "event_id": event.event_id,
        "type": event.type,
        "channel": event.channel or source.channel,
        "touchpoint": event.touchpoint,
        "occurred_at": occurred,
        "received_at": received_at,
        "source": source.name,
        "identifiers": identifiers,
        "traits": raw.get("traits") or {},
        "properties": raw.get("properties") or {},
        "context": raw.get("context") or {},
    }
    return touchpoint, partition_key(identifiers)


def encode_touchpoint(touchpoint: dict[str, Any]) -> bytes:
    return orjson.dumps(touchpoint, option=orjson.OPT_UTC_Z)


def segment_rejection(exc: SegmentRejected, prefix: str) -> EventRejected:
    loc = f"{prefix}.{exc.loc}" if prefix and exc.loc else (exc.loc or prefix)
    return EventRejected("schema", [{"loc": loc, "msg": exc.msg}])


class DedupStore:
    """``ingest.accepted_events`` (see the module docstring).

    Concurrent requests are coalesced: one SELECT answers every request waiting at that
    moment, and accepted ids are written by a background writer in multi-row INSERTs (a
    retry racing the writer is merely produced again and deduped downstream).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._checks: list[tuple[list[str], asyncio.Future[set[str]]]] = []
        self._records: list[tuple[str, str]] = []
        self._check_wakeup = asyncio.Event()
        self._record_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _ensure_started(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._check_loop()),
                asyncio.create_task(self._record_loop()),
            ]

    async def seen(self, event_ids: list[str]) -> set[str]:
        if not event_ids:
            return set()
        self._ensure_started()
        future: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        self._checks.append((event_ids, future))
        self._check_wakeup.set()
        return await future

    async def _check_loop(self) -> None:
        while True:
            await self._check_wakeup.wait()
            self._check_wakeup.clear()
            pending, self._checks = self._checks, []
            if not pending:
                continue
            wanted = list({i for ids, _ in pending for i in ids})
            try:
                async with self._engine.connect() as conn:
                    rows = await conn.execute(
                        text(
                            "SELECT event_id FROM ingest.accepted_events WHERE event_id = ANY(:ids)"
                        ),
                        {"ids": wanted},
                    )
                    found = {r[0] for r in rows}
            except Exception as exc:  # the store is an optimisation; Kafka is the durable home
                metrics.DEDUP_FAILURES.labels("check").inc()
                log.warning("dedup check failed error=%s", type(exc).__name__)
                found = set()
            for ids, future in pending:
                if not future.done():
                    future.set_result(found.intersection(ids))

    def record(self, event_ids: list[str], *, source: str) -> None:
        """Queue ids acknowledged by Kafka for the background writer."""
        if not event_ids:
            return
        self._ensure_started()
        self._records.extend((i, source) for i in event_ids)
        self._record_wakeup.set()

    async def _write(self, records: list[tuple[str, str]]) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO ingest.accepted_events (event_id, source) "
                        "SELECT * FROM unnest(CAST(:ids AS varchar[]), CAST(:srcs AS varchar[])) "
                        "ON CONFLICT (event_id) DO NOTHING"
                    ),
                    {"ids": [r[0] for r in records], "srcs": [r[1] for r in records]},
                )
        except Exception as exc:
            metrics.DEDUP_FAILURES.labels("record").inc()
            log.warning("dedup record failed error=%s count=%d", type(exc).__name__, len(records))

    async def _record_loop(self) -> None:
        while True:
            await self._record_wakeup.wait()
            self._record_wakeup.clear()
            pending, self._records = self._records, []
            if pending:
                await self._write(pending)

    async def flush(self) -> None:
        """Write what is queued now (tests, shutdown)."""
        pending, self._records = self._records, []
        if pending:
            await self._write(pending)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for _, future in self._checks:
            if not future.done():
                future.set_result(set())
        await self.flush()

    async def purge(self, *, older_than: timedelta) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                text(
                    "DELETE FROM ingest.accepted_events "
                    "WHERE accepted_at < now() - make_interval(secs => :secs)"
                ),
                {"secs": older_than.total_seconds()},
            )
            return result.rowcount or 0


class Publisher:
    """The idempotent, ``acks=all`` producer, started in the background so the service comes
    up (answering 503) while Kafka is down, and a 2xx is only given after every ack."""

    def __init__(self, bootstrap: str, topic: str, *, timeout: float, retry_after: int) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._timeout = timeout
        self._retry_after = retry_after
        self._producer: AIOKafkaProducer | None = None
        self._starter: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def start(self, *, wait: float = 10.0) -> None:
        self._starter = asyncio.create_task(self._start_loop())
        try:
            await asyncio.wait_for(asyncio.shield(self._starter), wait)
        except TimeoutError:
            log.warning("kafka producer not started yet; answering 503 until it is")

    async def _start_loop(self) -> None:
        delay = 0.5
        while True:
            producer = make_producer(self._bootstrap, client_id="cxm-ingest")
            try:
                await producer.start()
                self._producer = producer
                return
            except (KafkaError, OSError) as exc:
                await producer.stop()
                log.warning("kafka producer start failed error=%s", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        if self._starter is not None and not self._starter.done():
            self._starter.cancel()
        if self._producer is not None:
            await self._producer.stop()

    def _unavailable(self, detail: str) -> KafkaUnavailable:
        return KafkaUnavailable(
            f"kafka: {detail}; nothing was accepted, retry later", retry_after=self._retry_after
        )

    async def publish(self, records: list[Candidate]) -> None:
        producer = self._producer
        if producer is None:
            raise self._unavailable("not connected")
        started = time.perf_counter()

        async def send_all() -> None:
            futures = [await producer.send(self._topic, c.value, key=c.key) for c in records]
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), self._timeout)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("kafka produce failed error=%s count=%d", type(exc).__name__, len(records))
            raise self._unavailable("did not acknowledge the write") from None
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)


async def ingest(
    *,
    candidates: list[Candidate],
    outcomes: list[Outcome],
    source: Source,
    dedup: DedupStore,
    publisher: Publisher,
) -> list[Outcome]:
    """Publish the valid, not-yet-seen candidates; fill in and return every event's outcome."""
    seen = await dedup.seen(list({c.event_id for c in candidates}))
    fresh: list[Candidate] = []
    in_request: set[str] = set()
    for c in candidates:
        if c.event_id in seen or c.event_id in in_request:
            outcomes.append(Outcome(c.index, c.event_id, "duplicate"))
        else:
            in_request.add(c.event_id)
            fresh.append(c)
    if fresh:
        await publisher.publish(fresh)
        dedup.record([c.event_id for c in fresh], source=source.name)
        outcomes.extend(Outcome(c.index, c.event_id, "accepted") for c in fresh)
    outcomes.sort(key=lambda o: o.index)
    counts: dict[tuple[str, str], int] = {}
    for o in outcomes:
        reason = o.reason or ""
        counts[(o.status, reason)] = counts.get((o.status, reason), 0) + 1
    for (status, reason), n in counts.items():
        metrics.EVENTS.labels(source.name, source.channel, status, reason).inc(n)
    return outcomes
