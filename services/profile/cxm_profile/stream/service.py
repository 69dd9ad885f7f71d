"""Resolving one touchpoint into the PostgreSQL identity graph, atomically, with retries.

One transaction: skip identifiers of erased customers, lock and read the graph, decide
(pure), apply, store the touchpoint on the timeline and its traits (latest wins). A
concurrent change to the customers read (`GraphChanged`), a deadlock between two workers or
a lost race on a unique key rolls everything back and the whole resolution runs again on
fresh facts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cxm_profile import metrics
from cxm_profile.identity.identifiers import IgnoredIdentifier, ParsedIdentifiers, parse_identifiers
from cxm_profile.identity.models import MergeCustomers, QuarantineMerge, Resolution
from cxm_profile.identity.postgres import (
    BatchState,
    GraphChanged,
    PostgresIdentityRepository,
    lock,
)
from cxm_profile.identity.resolution import IdentityEvent
from cxm_profile.identity.rules import ResolutionRules
from cxm_profile.identity.service import resolve_parsed
from cxm_shared.events import Touchpoint

log = logging.getLogger(__name__)

ERASED = "erased"
# deadlock_detected, serialization_failure, unique_violation (a lost race on a new key)
RETRYABLE_SQLSTATES = {"40P01", "40001", "23505"}
MAX_ATTEMPTS = 10
BATCH_ATTEMPTS = 3  # then one transaction per event, so a hot identifier cannot starve


@dataclass(frozen=True, slots=True)
class Outcome:
    event_id: str
    customer_id: str | None
    duplicate: bool = False
    suppressed: bool = False  # every usable identifier belonged to an erased customer
    merges: tuple[MergeCustomers, ...] = ()
    quarantines: tuple[QuarantineMerge, ...] = ()
    ignored: tuple[IgnoredIdentifier, ...] = field(default_factory=tuple)


def sqlstate(error: DBAPIError) -> str | None:
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )


async def resolve_touchpoint(
    *,
    engine: AsyncEngine,
    touchpoint: Touchpoint,
    rules: ResolutionRules,
    secret: bytes,
    now: datetime | None = None,
) -> Outcome:
    started = time.perf_counter()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with engine.begin() as conn:
                outcome = await _resolve_once(
                    conn, touchpoint=touchpoint, rules=rules, secret=secret, now=now
                )
            metrics.RESOLUTION_SECONDS.observe(time.perf_counter() - started)
            return outcome
        except GraphChanged:
            if attempt == MAX_ATTEMPTS:
                raise
        except DBAPIError as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES or attempt == MAX_ATTEMPTS:
                raise
        metrics.RETRIES.inc()
        log.info("resolution retried attempt=%d", attempt)
    raise AssertionError("unreachable")


async def _suppressed_keys(conn: AsyncConnection, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    rows = await conn.execute(
        text(
            "SELECT identifier_key FROM profile.suppressions"
            " WHERE identifier_key = ANY(CAST(:k AS text[]))"
        ),
        {"k": keys},
    )
    return {r[0] for r in rows}


async def _suppressed(conn: AsyncConnection, parsed: ParsedIdentifiers) -> ParsedIdentifiers:
    erased = await _suppressed_keys(conn, [i.key for i in parsed.accepted])
    return _without(parsed, erased)


def _without(parsed: ParsedIdentifiers, erased: set[str]) -> ParsedIdentifiers:
    if not erased or not any(i.key in erased for i in parsed.accepted):
        return parsed
    return ParsedIdentifiers(
        tuple(i for i in parsed.accepted if i.key not in erased),
        parsed.ignored
        + tuple(
            IgnoredIdentifier(i.type, i.masked, ERASED) for i in parsed.accepted if i.key in erased
        ),
    )


async def _resolve_once(
    conn: AsyncConnection,
    *,
    touchpoint: Touchpoint,
    rules: ResolutionRules,
    secret: bytes,
    now: datetime | None,
) -> Outcome:
    parsed = parse_identifiers(touchpoint.identifiers, rules=rules, secret=secret)
    parsed = await _suppressed(conn, parsed)
    writes = _Writes()
    outcome = await _decide_and_apply(
        PostgresIdentityRepository(conn), writes, touchpoint, parsed, rules=rules, now=now
    )
    await writes.flush(conn)
    return outcome


class _Writes:
    """Rows of the touchpoints resolved in one transaction, written together at its end (no
    resolution in the same transaction reads them)."""

    def __init__(self) -> None:
        self.homes: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self.traits: list[dict[str, Any]] = []

    def add(self, touchpoint: Touchpoint, home: str) -> None:
        self.homes.append({"c": home, "e": touchpoint.event_id})
        self.timeline.append(
            {
                "e": touchpoint.event_id,
                "c": home,
                "o": touchpoint.occurred_at,
                "r": touchpoint.received_at,
                "ty": touchpoint.type,
                "ch": touchpoint.channel,
                "tp": touchpoint.touchpoint,
                "s": touchpoint.source,
                "p": orjson.dumps(touchpoint.properties).decode(),
                "cx": orjson.dumps(touchpoint.context).decode(),
            }
        )
        if touchpoint.traits:
            self.traits.append(
                {
                    "c": home,
                    "s": touchpoint.source,
                    "ch": touchpoint.channel,
                    "e": touchpoint.event_id,
                    "o": touchpoint.occurred_at,
                    "traits": orjson.dumps(touchpoint.traits).decode(),
                }
            )

    async def flush(self, conn: AsyncConnection, batch: BatchState | None = None) -> None:
        if batch is not None and batch.new_processed:
            home = {row["e"]: row["c"] for row in self.homes}
            await conn.execute(
                _INSERT_PROCESSED,
                [{"e": e, "c": home.get(e, c)} for e, c in batch.new_processed.items()],
            )
        elif self.homes:
            await conn.execute(_UPDATE_PROCESSED, self.homes)
        if self.timeline:
            await conn.execute(_INSERT_TIMELINE, self.timeline)
        if self.traits:
            await conn.execute(_UPSERT_TRAITS, self.traits)


async def _decide_and_apply(
    repository: PostgresIdentityRepository,
    writes: _Writes,
    touchpoint: Touchpoint,
    parsed: ParsedIdentifiers,
    *,
    rules: ResolutionRules,
    now: datetime | None,
) -> Outcome:
    event = IdentityEvent(touchpoint.event_id, touchpoint.channel, touchpoint.touchpoint, parsed)
    resolution = await resolve_parsed(
        event=event, rules=rules, repository=repository, now=now or datetime.now(UTC)
    )
    suppressed = resolution.customer_id is None and any(i.reason == ERASED for i in parsed.ignored)
    if resolution.duplicate:
        return Outcome(
            touchpoint.event_id,
            resolution.customer_id,
            duplicate=True,
            merges=await _merges_of_event(repository.conn, touchpoint.event_id),
        )
    if resolution.customer_id is None:
        return Outcome(touchpoint.event_id, None, suppressed=suppressed, ignored=resolution.ignored)
    writes.add(touchpoint, _home_customer(resolution, parsed, repository))
    _observe(resolution, repository)
    return Outcome(
        touchpoint.event_id,
        resolution.customer_id,
        merges=resolution.merges,
        quarantines=resolution.quarantines,
        ignored=resolution.ignored,
    )


async def resolve_batch(
    *,
    engine: AsyncEngine,
    touchpoints: Sequence[Touchpoint],
    rules: ResolutionRules,
    secret: bytes,
    now: datetime | None = None,
) -> list[Outcome]:
    """Resolve touchpoints in order in one transaction (one commit, rows written together).

    Every event id and identifier key of the batch is locked up front in one sorted
    statement, so batches of different workers touching the same identifiers serialise
    exactly as single events do. A concurrent change or deadlock rolls the whole batch back
    and retries it; if that keeps happening, the events are resolved one transaction each.
    """
    if not touchpoints:
        return []
    started = time.perf_counter()
    parsed = [parse_identifiers(tp.identifiers, rules=rules, secret=secret) for tp in touchpoints]
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            async with engine.begin() as conn:
                outcomes = await _resolve_batch_once(
                    conn, touchpoints=touchpoints, parsed=parsed, rules=rules, now=now
                )
            elapsed = time.perf_counter() - started
            for _ in touchpoints:
                metrics.RESOLUTION_SECONDS.observe(elapsed)
            metrics.BATCH_SIZE.observe(len(touchpoints))
            return outcomes
        except GraphChanged:
            pass
        except DBAPIError as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES:
                raise
        metrics.RETRIES.inc()
        log.info("batch resolution retried attempt=%d size=%d", attempt, len(touchpoints))
    return [
        await resolve_touchpoint(engine=engine, touchpoint=tp, rules=rules, secret=secret, now=now)
        for tp in touchpoints
    ]


async def _resolve_batch_once(
    conn: AsyncConnection,
    *,
    touchpoints: Sequence[Touchpoint],
    parsed: list[ParsedIdentifiers],
    rules: ResolutionRules,
    now: datetime | None,
) -> list[Outcome]:
    event_ids = sorted({tp.event_id for tp in touchpoints})
    keys = sorted({i.key for p in parsed for i in p.accepted})
    await lock(conn, [*(f"e:{e}" for e in event_ids), *(f"k:{k}" for k in keys)])
    batch = BatchState()
    rows = await conn.execute(
        text(
            "SELECT event_id, customer_id FROM profile.processed_events"
            " WHERE event_id = ANY(CAST(:e AS text[]))"
        ),
        {"e": event_ids},
    )
    batch.processed.update((r.event_id, r.customer_id) for r in rows)
    erased = await _suppressed_keys(conn, keys)
    writes = _Writes()
    outcomes = []
    for touchpoint, event_parsed in zip(touchpoints, parsed, strict=True):
        repository = PostgresIdentityRepository(conn, batch=batch)
        outcomes.append(
            await _decide_and_apply(
                repository,
                writes,
                touchpoint,
                _without(event_parsed, erased),
                rules=rules,
                now=now,
            )
        )
    await writes.flush(conn, batch)
    return outcomes


def _home_customer(
    resolution: Resolution, parsed: ParsedIdentifiers, repository: PostgresIdentityRepository
) -> str:
    """The customer whose link the event's best joined identifier is: the event (and its
    traits) follow that side if the merge is ever undone."""
    facts = repository.facts
    assert facts is not None and resolution.customer_id is not None
    joined = {resolution.customer_id} | {m.loser_id for m in resolution.merges}
    new = {link.identifier.key: link.customer_id for link in resolution.links}
    for identifier in parsed.accepted:
        if identifier.key in new:
            return new[identifier.key]
        link = facts.links.get(identifier.key)
        if link is not None and facts.roots[link.customer_id] in joined:
            return link.customer_id
    return resolution.customer_id


def _observe(resolution: Resolution, repository: PostgresIdentityRepository) -> None:
    facts = repository.facts
    assert facts is not None
    joined = {resolution.customer_id} | {m.loser_id for m in resolution.merges}
    size = len(resolution.links) + sum(
        len(c.identifiers) for root, c in facts.customers.items() if root in joined
    )
    metrics.CLUSTER_SIZE.observe(size)
    for merge in resolution.merges:
        metrics.MERGES.labels(rule=merge.rule).inc()
    for quarantine in resolution.quarantines:
        for reason in quarantine.reasons:
            metrics.QUARANTINED.labels(reason=reason).inc()


async def _merges_of_event(conn: AsyncConnection, event_id: str) -> tuple[MergeCustomers, ...]:
    rows = await conn.execute(
        text("SELECT merge_id FROM profile.merges WHERE event_id = :e ORDER BY merge_id"),
        {"e": event_id},
    )
    repository = PostgresIdentityRepository(conn)
    merges = []
    for (merge_id,) in rows.all():
        record = await repository.get_merge(merge_id)
        if record is not None:
            merges.append(record.merge)
    return tuple(merges)


_INSERT_PROCESSED = text(
    "INSERT INTO profile.processed_events (event_id, customer_id, processed_at)"
    " VALUES (:e, :c, now())"
)
_UPDATE_PROCESSED = text("UPDATE profile.processed_events SET customer_id = :c WHERE event_id = :e")
_INSERT_TIMELINE = text(
    "INSERT INTO profile.timeline (event_id, customer_id, occurred_at, received_at, type,"
    " channel, touchpoint, source, properties, context) VALUES (:e, :c, :o, :r, :ty,"
    " :ch, :tp, :s, CAST(:p AS jsonb), CAST(:cx AS jsonb))"
    " ON CONFLICT (event_id) DO NOTHING"
)
# Latest occurred_at wins (event_id breaks ties) so late events never overwrite newer ones.
_UPSERT_TRAITS = text(
    "INSERT INTO profile.traits (customer_id, name, value, source, channel, event_id,"
    " occurred_at) SELECT :c, t.key, t.value, :s, :ch, :e, :o"
    " FROM jsonb_each(CAST(:traits AS jsonb)) AS t"
    " ON CONFLICT (customer_id, name) DO UPDATE SET value = excluded.value,"
    " source = excluded.source, channel = excluded.channel,"
    " event_id = excluded.event_id, occurred_at = excluded.occurred_at"
    " WHERE (excluded.occurred_at, excluded.event_id)"
    " > (profile.traits.occurred_at, profile.traits.event_id)"
)
