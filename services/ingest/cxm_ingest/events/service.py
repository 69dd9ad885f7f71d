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
from aiokafka.partitioner import murmur2
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
# A join on the unnested ids, not ``event_id = ANY($1)``: a plan cached while the table was
# small can be a sequential scan, and with ANY it compares every row with every id (seconds
# per lookup at 8,000 ids and 100k rows, seen in the bench); the join stays linear.
SEEN_SQL = (
    "SELECT e.event_id FROM unnest($1::varchar[]) AS wanted(id) "
    "JOIN ingest.accepted_events AS e ON e.event_id = wanted.id"
)
LANE_LIMIT = 20_000  # records waiting for one partition before requests get 503
KEY_HASH_CACHE = 100_000  # keys (32 bytes each) whose partition hash is remembered
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
    found = _unbounded(value, depth)
    if found is None:
        return None
    path, msg = found
    return {"loc": _loc(tuple(reversed(path)), loc), "msg": msg}


def _unbounded(value: Any, depth: int) -> tuple[list[str | int], str] | None:
    """The problem and its path (innermost first) of the first value out of bounds. The
    path is only built on the way out of a failure: this runs for every field of every
    event, and almost all of them are fine."""
    if depth > MAX_DEPTH:
        return [], f"nested deeper than {MAX_DEPTH} levels"
    kind = type(value)
    if kind is str:
        return ([], _NUL) if "\x00" in value else None
    # Children one level down that are not containers are checked in place, unless they are
    # already too deep (then the recursion reports the depth, as for any value).
    shallow = depth < MAX_DEPTH
    if kind is dict:
        for k, v in value.items():
            if len(k) > MAX_KEY_CHARS or "\x00" in k:
                return [], "has a key longer than 256 characters or with NUL"
            child = type(v)
            if shallow and child is str:
                if "\x00" in v:
                    return [k], _NUL
            elif not (shallow and child in _SCALARS):
                found = _unbounded(v, depth + 1)
                if found is not None:
                    found[0].append(k)
                    return found
    elif kind is list:
        for i, v in enumerate(value):
            child = type(v)
            if shallow and child is str:
                if "\x00" in v:
                    return [i], _NUL
            elif not (shallow and child in _SCALARS):
                found = _unbounded(v, depth + 1)
                if found is not None:
                    found[0].append(i)
                    return found
    return None


_NUL = "contains a NUL character"
_SCALARS = frozenset((int, float, bool, type(None)))


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
        self._lookup_conn: AsyncConnection | None = None
        self._lookup_driver: Any = None  # the asyncpg connection under _lookup_conn

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
                found = await self._lookup(wanted)
            except Exception as exc:  # the store is an optimisation; Kafka is the durable home
                metrics.DEDUP_FAILURES.labels("check").inc()
                log.warning("dedup check failed error=%s", type(exc).__name__)
                found = set()
            for ids, future in pending:
                if not future.done():
                    future.set_result(found.intersection(ids))

    async def _lookup(self, event_ids: list[str]) -> set[str]:
        """The ids among ``event_ids`` already recorded, on a connection kept for lookups.

        Straight on the asyncpg connection, in autocommit: a pool checkout, SQLAlchemy's
        execution path and the rollback on check-in cost more CPU than the query itself
        (~12 % of a request's, profiled). A failed lookup drops the connection; the next one
        connects again.
        """
        if self._lookup_conn is None:
            conn = await self._engine.connect()
            try:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                raw = await conn.get_raw_connection()
                self._lookup_driver = raw.driver_connection
                # Plan every lookup with the table's size now: a generic plan cached while the
                # table was small scans all of it once it is large (~100 ms a lookup, seen).
                await self._lookup_driver.execute("SET plan_cache_mode = force_custom_plan")
            except BaseException:
                await conn.close()
                raise
            self._lookup_conn = conn
        try:
            rows = await self._lookup_driver.fetch(SEEN_SQL, event_ids)
        except BaseException:
            await self._drop_lookup_connection()
            raise
        return {r[0] for r in rows}

    async def _drop_lookup_connection(self) -> None:
        conn, self._lookup_conn, self._lookup_driver = self._lookup_conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

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
        if self._lookup_conn is not None:
            conn, self._lookup_conn, self._lookup_driver = self._lookup_conn, None, None
            await conn.close()
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
        self._key_hashes: dict[bytes, int] = {}
        self._lanes: dict[int, _Lane] = {}
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
        await self.close_lanes()
        if self._producer is not None:
            await self._producer.stop()

    def _unavailable(self, detail: str) -> KafkaUnavailable:
        return KafkaUnavailable(
            f"kafka: {detail}; nothing was accepted, retry later", retry_after=self._retry_after
        )

    async def publish(self, records: list[Candidate]) -> None:
        """Return once Kafka acknowledged every record (``acks=all``), else raise
        :class:`KafkaUnavailable`."""
        producer = self._producer
        if producer is None:
            raise self._unavailable("not connected")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):  # no extra task, unlike wait_for
                await self._send(producer, records)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("kafka produce failed error=%s count=%d", type(exc).__name__, len(records))
            raise self._unavailable("did not acknowledge the write") from None
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)

    async def _send(self, producer: AIOKafkaProducer, records: list[Candidate]) -> None:
        # Backpressure: while Kafka does not drain, refuse (503) rather than queue without end.
        if any(len(lane.records) >= LANE_LIMIT for lane in self._lanes.values()):
            raise self._unavailable("too many events waiting for the broker")
        partitions = sorted(await producer.partitions_for(self._topic))
        acks: set[asyncio.Future[None]] = set()
        for c in records:
            partition = partitions[self._key_hash(c.key) % len(partitions)]
            lane = self._lanes.get(partition)
            if lane is None:
                lane = self._lanes[partition] = _Lane()
                lane.task = asyncio.create_task(self._drain(producer, partition, lane))
            lane.records.append((c.key, c.value))
            lane.wakeup.set()
            acks.add(lane.acked)
        # Shielded: an ack is shared with other requests; this one timing out must not
        # cancel theirs.
        if len(acks) == 1:
            await asyncio.shield(acks.pop())
        else:
            await asyncio.gather(*(asyncio.shield(a) for a in acks))

    def _key_hash(self, key: bytes) -> int:
        """The hash the producer's default partitioner takes a key's partition from (Kafka's
        murmur2), so a customer's events keep to the partition ``send()`` would pick. Cached:
        aiokafka's murmur2 is pure Python and customers post many events."""
        found = self._key_hashes.get(key)
        if found is None:
            if len(self._key_hashes) >= KEY_HASH_CACHE:
                self._key_hashes.clear()
            found = self._key_hashes[key] = murmur2(key) & 0x7FFFFFFF
        return found

    async def _drain(self, producer: AIOKafkaProducer, partition: int, lane: _Lane) -> None:
        """Hand a partition's waiting records to the producer as record batches.

        ``send_batch`` waits while the partition's previous batch is in flight (the
        idempotent producer keeps one in flight per partition); records posted meanwhile
        collect in the lane and go as the next batch. That is the coalescing ``send()`` does,
        with one future per batch instead of one per record: a third of the CPU.
        """
        loop = asyncio.get_running_loop()
        while True:
            await lane.wakeup.wait()
            lane.wakeup.clear()
            if not lane.records:
                continue
            records, acked = lane.records, lane.acked
            lane.records, lane.acked = [], loop.create_future()
            try:
                sent = []
                batch = producer.create_batch()
                for key, value in records:
                    if batch.append(key=key, value=value, timestamp=None) is None:  # full
                        sent.append(
                            await producer.send_batch(batch, self._topic, partition=partition)
                        )
                        batch = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)  # a first always fits
                sent.append(await producer.send_batch(batch, self._topic, partition=partition))
            except (KafkaError, OSError) as exc:
                _settle(acked, exc)
                continue
            except asyncio.CancelledError:
                _settle(acked, KafkaError("producer stopped"))
                raise
            asyncio.gather(*sent).add_done_callback(
                lambda done, acked=acked: _settle(
                    acked, done.exception() if not done.cancelled() else KafkaError("cancelled")
                )
            )

    async def close_lanes(self) -> None:
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        for lane in self._lanes.values():
            if lane.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
            _settle(lane.acked, KafkaError("producer stopped"))
        self._lanes = {}


class _Lane:
    """Records waiting to go to one partition, and the future of their acknowledgement."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


def _settle(acked: asyncio.Future[None], error: BaseException | None) -> None:
    if acked.done():
        return
    if error is None:
        acked.set_result(None)
    else:
        acked.set_exception(error)
        acked.exception()  # marked retrieved: every waiter may have timed out already


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
