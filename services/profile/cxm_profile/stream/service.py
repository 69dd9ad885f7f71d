"""Resolving touchpoints into the PostgreSQL identity graph, set-based per batch, with retries.

One transaction per batch, on the raw asyncpg connection: lock every event id and identifier
key of the batch (one sorted statement), skip identifiers of erased customers, load what the
batch can reach into a `GraphView` (a few statements for the whole batch), decide each event
in order against the view (pure; each decision is applied to the view before the next), then
write the graph changes, processed events, timeline and traits (latest wins) in a few array
statements. A concurrent change to the customers read (`GraphChanged`), a deadlock between
two workers or a lost race on a unique key rolls everything back and the batch runs again on
fresh facts; a batch that keeps losing is resolved one event per transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import asyncpg
import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from cxm_profile import metrics
from cxm_profile.identity.identifiers import IgnoredIdentifier, ParsedIdentifiers, parse_identifiers
from cxm_profile.identity.models import GraphFacts, MergeCustomers, QuarantineMerge, Resolution
from cxm_profile.identity.postgres import (
    GraphChanged,
    load_view,
    lock_names,
    merges_of_events,
    write_decisions,
)
from cxm_profile.identity.resolution import IdentityEvent, decide
from cxm_profile.identity.rules import ResolutionRules
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


def sqlstate(error: BaseException) -> str | None:
    if isinstance(error, asyncpg.PostgresError):
        return error.sqlstate
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
    """Resolve one touchpoint in its own transaction, retrying on a concurrent change."""
    started = time.perf_counter()
    parsed = [parse_identifiers(touchpoint.identifiers, rules=rules, secret=secret)]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            (outcome,) = await _resolve_in_transaction(
                engine, touchpoints=[touchpoint], parsed=parsed, rules=rules, now=now
            )
            metrics.RESOLUTION_SECONDS.observe(time.perf_counter() - started)
            return outcome
        except GraphChanged:
            if attempt == MAX_ATTEMPTS:
                raise
        except (DBAPIError, asyncpg.PostgresError) as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES or attempt == MAX_ATTEMPTS:
                raise
        metrics.RETRIES.inc()
        log.info("resolution retried attempt=%d", attempt)
    raise AssertionError("unreachable")


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
            outcomes = await _resolve_in_transaction(
                engine, touchpoints=touchpoints, parsed=parsed, rules=rules, now=now
            )
            elapsed = time.perf_counter() - started
            for _ in touchpoints:
                metrics.RESOLUTION_SECONDS.observe(elapsed)
            metrics.BATCH_SIZE.observe(len(touchpoints))
            return outcomes
        except GraphChanged:
            pass
        except (DBAPIError, asyncpg.PostgresError) as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES:
                raise
        metrics.RETRIES.inc()
        log.info("batch resolution retried attempt=%d size=%d", attempt, len(touchpoints))
    return [
        await resolve_touchpoint(engine=engine, touchpoint=tp, rules=rules, secret=secret, now=now)
        for tp in touchpoints
    ]


async def _resolve_in_transaction(
    engine: AsyncEngine,
    *,
    touchpoints: Sequence[Touchpoint],
    parsed: Sequence[ParsedIdentifiers],
    rules: ResolutionRules,
    now: datetime | None,
) -> list[Outcome]:
    # The driver's own connection and transaction: SQLAlchemy's statement layer is left out
    # of the hot path (it never began a transaction on this connection, so returning the
    # connection to its pool does nothing more).
    async with engine.connect() as sa_conn:
        conn: asyncpg.Connection = (await sa_conn.get_raw_connection()).driver_connection
        async with conn.transaction():
            return await _resolve_batch_once(
                conn, touchpoints=touchpoints, parsed=parsed, rules=rules, now=now
            )


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


async def _resolve_batch_once(
    conn: asyncpg.Connection,
    *,
    touchpoints: Sequence[Touchpoint],
    parsed: Sequence[ParsedIdentifiers],
    rules: ResolutionRules,
    now: datetime | None,
) -> list[Outcome]:
    event_ids = sorted({tp.event_id for tp in touchpoints})
    keys = sorted({i.key for p in parsed for i in p.accepted})
    await lock_names(conn, [*(f"e:{e}" for e in event_ids), *(f"k:{k}" for k in keys)])
    erased = {r[0] for r in await conn.fetch(_SUPPRESSED, keys)} if keys else set()
    view = await load_view(conn, event_ids=event_ids, keys=[k for k in keys if k not in erased])
    announced = await merges_of_events(conn, [e for e in event_ids if e in view.events])
    writes = _Writes()
    decided: list[Resolution] = []
    outcomes: list[Outcome] = []
    for touchpoint, event_parsed in zip(touchpoints, parsed, strict=True):
        event_parsed = _without(event_parsed, erased)
        event = IdentityEvent(
            touchpoint.event_id, touchpoint.channel, touchpoint.touchpoint, event_parsed
        )
        facts = view.facts_for(event_id=event.event_id, keys=[i.key for i in event_parsed.accepted])
        resolution = decide(event, facts=facts, rules=rules, now=now or datetime.now(UTC))
        view.commit(resolution)
        if resolution.duplicate:
            outcomes.append(
                Outcome(
                    touchpoint.event_id,
                    resolution.customer_id,
                    duplicate=True,
                    merges=announced.get(touchpoint.event_id, ()),
                )
            )
            continue
        if resolution.customer_id is None:
            suppressed = any(i.reason == ERASED for i in event_parsed.ignored)
            outcomes.append(
                Outcome(
                    touchpoint.event_id,
                    None,
                    suppressed=suppressed,
                    ignored=resolution.ignored,
                )
            )
            continue
        decided.append(resolution)
        home = _home_customer(resolution, event_parsed, facts)
        writes.add(touchpoint, home, resolution.customer_id)
        announced[touchpoint.event_id] = tuple(sorted(resolution.merges, key=_merge_id))
        _observe(resolution, facts)
        outcomes.append(
            Outcome(
                touchpoint.event_id,
                resolution.customer_id,
                merges=resolution.merges,
                quarantines=resolution.quarantines,
                ignored=resolution.ignored,
            )
        )
    await write_decisions(conn, decided)
    await writes.flush(conn)
    return await _as_first_published(conn, outcomes)


async def _as_first_published(conn: asyncpg.Connection, outcomes: list[Outcome]) -> list[Outcome]:
    """A redelivered event goes out under the customer id it was first published under (see
    migration 0004): under the current owner instead, it could be applied to the owner before
    the merged-away customer's state that already holds it is combined into theirs."""
    again = [o.event_id for o in outcomes if o.duplicate]
    if not again:
        return outcomes
    first = dict(await conn.fetch(_PUBLISHED_TO, again))
    return [
        replace(o, customer_id=first[o.event_id]) if o.duplicate and first.get(o.event_id) else o
        for o in outcomes
    ]


def _merge_id(merge: MergeCustomers) -> str:
    return merge.merge_id


class _Writes:
    """Rows of the touchpoints resolved in one transaction, written together at its end (no
    resolution in the same transaction reads them), one array statement per table."""

    def __init__(self) -> None:
        self.event_ids: list[str] = []
        self.homes: list[str] = []
        self.published: list[str] = []
        self.occurred: list[datetime] = []
        self.received: list[datetime] = []
        self.types: list[str] = []
        self.channels: list[str] = []
        self.touchpoints: list[str | None] = []
        self.sources: list[str] = []
        self.properties: list[str] = []
        self.contexts: list[str] = []
        self.traits: list[tuple[str, str, str, str, datetime, str]] = []

    def add(self, touchpoint: Touchpoint, home: str, published: str) -> None:
        self.event_ids.append(touchpoint.event_id)
        self.homes.append(home)
        self.published.append(published)
        self.occurred.append(touchpoint.occurred_at)
        self.received.append(touchpoint.received_at)
        self.types.append(touchpoint.type)
        self.channels.append(touchpoint.channel)
        self.touchpoints.append(touchpoint.touchpoint)
        self.sources.append(touchpoint.source)
        self.properties.append(orjson.dumps(touchpoint.properties).decode())
        self.contexts.append(orjson.dumps(touchpoint.context).decode())
        if touchpoint.traits:
            self.traits.append(
                (
                    home,
                    touchpoint.source,
                    touchpoint.channel,
                    touchpoint.event_id,
                    touchpoint.occurred_at,
                    orjson.dumps(touchpoint.traits).decode(),
                )
            )

    async def flush(self, conn: asyncpg.Connection) -> None:
        if not self.event_ids:
            return
        await conn.execute(_INSERT_PROCESSED, self.event_ids, self.homes, self.published)
        await conn.execute(
            _INSERT_TIMELINE,
            self.event_ids,
            self.homes,
            self.occurred,
            self.received,
            self.types,
            self.channels,
            self.touchpoints,
            self.sources,
            self.properties,
            self.contexts,
        )
        if self.traits:
            columns = zip(*self.traits, strict=True)
            await conn.execute(_UPSERT_TRAITS, *(list(column) for column in columns))


def _home_customer(resolution: Resolution, parsed: ParsedIdentifiers, facts: GraphFacts) -> str:
    """The customer whose link the event's best joined identifier is: the event (and its
    traits) follow that side if the merge is ever undone."""
    assert resolution.customer_id is not None
    joined = {resolution.customer_id} | {m.loser_id for m in resolution.merges}
    new = {link.identifier.key: link.customer_id for link in resolution.links}
    for identifier in parsed.accepted:
        if identifier.key in new:
            return new[identifier.key]
        link = facts.links.get(identifier.key)
        if link is not None and facts.roots[link.customer_id] in joined:
            return link.customer_id
    return resolution.customer_id


def _observe(resolution: Resolution, facts: GraphFacts) -> None:
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


_SUPPRESSED = (
    "SELECT identifier_key FROM profile.suppressions WHERE identifier_key = ANY($1::text[])"
)
_INSERT_PROCESSED = (
    "INSERT INTO profile.processed_events (event_id, customer_id, published_to, processed_at)"
    " SELECT e, c, p, now() FROM unnest($1::text[], $2::text[], $3::text[]) AS u(e, c, p)"
)
_PUBLISHED_TO = (
    "SELECT event_id, published_to FROM profile.processed_events"
    " WHERE event_id = ANY($1::text[]) AND published_to IS NOT NULL"
)
_INSERT_TIMELINE = (
    "INSERT INTO profile.timeline (event_id, customer_id, occurred_at, received_at, type,"
    " channel, touchpoint, source, properties, context)"
    " SELECT e, c, o, r, ty, ch, tp, s, p::jsonb, cx::jsonb FROM unnest($1::text[],"
    " $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],"
    " $8::text[], $9::text[], $10::text[]) AS u(e, c, o, r, ty, ch, tp, s, p, cx)"
    " ON CONFLICT (event_id) DO NOTHING"
)
# Latest occurred_at wins (event_id breaks ties) so late events never overwrite newer ones;
# within the batch the same order picks one row per trait first (an upsert may not touch a
# row twice).
_UPSERT_TRAITS = (
    "INSERT INTO profile.traits (customer_id, name, value, source, channel, event_id,"
    " occurred_at)"
    " SELECT DISTINCT ON (u.c, t.key) u.c, t.key, t.value, u.s, u.ch, u.e, u.o"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],"
    " $6::text[]) AS u(c, s, ch, e, o, traits)"
    " CROSS JOIN LATERAL jsonb_each(u.traits::jsonb) AS t"
    " ORDER BY u.c, t.key, u.o DESC, u.e DESC"
    " ON CONFLICT (customer_id, name) DO UPDATE SET value = excluded.value,"
    " source = excluded.source, channel = excluded.channel,"
    " event_id = excluded.event_id, occurred_at = excluded.occurred_at"
    " WHERE (excluded.occurred_at, excluded.event_id)"
    " > (profile.traits.occurred_at, profile.traits.event_id)"
)
