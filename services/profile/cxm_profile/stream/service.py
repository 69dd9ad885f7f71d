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
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cxm_profile import metrics
from cxm_profile.identity.identifiers import IgnoredIdentifier, ParsedIdentifiers, parse_identifiers
from cxm_profile.identity.models import MergeCustomers, QuarantineMerge, Resolution
from cxm_profile.identity.postgres import GraphChanged, PostgresIdentityRepository
from cxm_profile.identity.resolution import IdentityEvent
from cxm_profile.identity.rules import ResolutionRules
from cxm_profile.identity.service import resolve_parsed
from cxm_shared.events import Touchpoint

log = logging.getLogger(__name__)

ERASED = "erased"
# deadlock_detected, serialization_failure, unique_violation (a lost race on a new key)
RETRYABLE_SQLSTATES = {"40P01", "40001", "23505"}
MAX_ATTEMPTS = 10


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


async def _suppressed(conn: AsyncConnection, parsed: ParsedIdentifiers) -> ParsedIdentifiers:
    keys = [i.key for i in parsed.accepted]
    if not keys:
        return parsed
    rows = await conn.execute(
        text(
            "SELECT identifier_key FROM profile.suppressions"
            " WHERE identifier_key = ANY(CAST(:k AS text[]))"
        ),
        {"k": keys},
    )
    erased = {r[0] for r in rows}
    if not erased:
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
    event = IdentityEvent(touchpoint.event_id, touchpoint.channel, touchpoint.touchpoint, parsed)
    repository = PostgresIdentityRepository(conn)
    resolution = await resolve_parsed(
        event=event, rules=rules, repository=repository, now=now or datetime.now(UTC)
    )
    suppressed = resolution.customer_id is None and any(i.reason == ERASED for i in parsed.ignored)
    if resolution.duplicate:
        return Outcome(
            touchpoint.event_id,
            resolution.customer_id,
            duplicate=True,
            merges=await _merges_of_event(conn, touchpoint.event_id),
        )
    if resolution.customer_id is None:
        return Outcome(touchpoint.event_id, None, suppressed=suppressed, ignored=resolution.ignored)
    home = _home_customer(resolution, parsed, repository)
    await conn.execute(
        text("UPDATE profile.processed_events SET customer_id = :c WHERE event_id = :e"),
        {"c": home, "e": touchpoint.event_id},
    )
    await _store_timeline(conn, touchpoint=touchpoint, customer_id=home)
    if touchpoint.traits:
        await _store_traits(conn, touchpoint=touchpoint, customer_id=home)
    _observe(resolution, repository)
    return Outcome(
        touchpoint.event_id,
        resolution.customer_id,
        merges=resolution.merges,
        quarantines=resolution.quarantines,
        ignored=resolution.ignored,
    )


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


async def _store_timeline(
    conn: AsyncConnection, *, touchpoint: Touchpoint, customer_id: str
) -> None:
    await conn.execute(
        text(
            "INSERT INTO profile.timeline (event_id, customer_id, occurred_at, received_at, type,"
            " channel, touchpoint, source, properties, context) VALUES (:e, :c, :o, :r, :ty,"
            " :ch, :tp, :s, CAST(:p AS jsonb), CAST(:cx AS jsonb))"
            " ON CONFLICT (event_id) DO NOTHING"
        ),
        {
            "e": touchpoint.event_id,
            "c": customer_id,
            "o": touchpoint.occurred_at,
            "r": touchpoint.received_at,
            "ty": touchpoint.type,
            "ch": touchpoint.channel,
            "tp": touchpoint.touchpoint,
            "s": touchpoint.source,
            "p": orjson.dumps(touchpoint.properties).decode(),
            "cx": orjson.dumps(touchpoint.context).decode(),
        },
    )


async def _store_traits(conn: AsyncConnection, *, touchpoint: Touchpoint, customer_id: str) -> None:
    # Latest occurred_at wins (event_id breaks ties) so late events never overwrite newer ones.
    await conn.execute(
        text(
            "INSERT INTO profile.traits (customer_id, name, value, source, channel, event_id,"
            " occurred_at) SELECT :c, t.key, t.value, :s, :ch, :e, :o"
            " FROM jsonb_each(CAST(:traits AS jsonb)) AS t"
            " ON CONFLICT (customer_id, name) DO UPDATE SET value = excluded.value,"
            " source = excluded.source, channel = excluded.channel,"
            " event_id = excluded.event_id, occurred_at = excluded.occurred_at"
            " WHERE (excluded.occurred_at, excluded.event_id)"
            " > (profile.traits.occurred_at, profile.traits.event_id)"
        ),
        {
            "c": customer_id,
            "s": touchpoint.source,
            "ch": touchpoint.channel,
            "e": touchpoint.event_id,
            "o": touchpoint.occurred_at,
            "traits": orjson.dumps(touchpoint.traits).decode(),
        },
    )
