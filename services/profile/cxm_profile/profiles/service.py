"""The profile read side and the person-driven graph changes (unmerge, quarantine, erase).

Plain keyword-only functions over an engine; each write runs in one transaction that locks
the live customers it changes (see identity/postgres.py) and is retried on a concurrent
change.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cxm_profile import metrics
from cxm_profile.errors import BadRequest, Conflict, NotFound
from cxm_profile.identity import service as identity_service
from cxm_profile.identity.errors import IdentityError, MergeNotActiveError
from cxm_profile.identity.identifiers import Identifier
from cxm_profile.identity.models import MergeCustomers, UnmergeCustomers
from cxm_profile.identity.postgres import (
    GraphChanged,
    PostgresIdentityRepository,
    lock,
    lock_roots,
    members_of,
    roots_of,
)
from cxm_profile.identity.resolution import derived_id
from cxm_profile.models import CUSTOMER_TABLES
from cxm_profile.stream.outbox import enqueue
from cxm_profile.stream.publish import change_messages, erasure_messages, merged, unmerged
from cxm_profile.stream.service import MAX_ATTEMPTS, RETRYABLE_SQLSTATES, sqlstate
from cxm_shared.events import ScoreSnapshot, encode
from cxm_shared.topics import Topics

T = TypeVar("T")

# A customer's cluster: ``root`` (the live customer, following merges up from ``{seed}``) and
# ``down`` (the root and every customer merged into it). Shared with the decisions query.
CLUSTER_CTE = """
WITH RECURSIVE up(cur, parent, depth) AS (
    {seed}
    UNION ALL
    SELECT c.customer_id, c.parent_id, up.depth + 1
    FROM up JOIN profile.customers c ON c.customer_id = up.parent WHERE up.depth < 1000
),
root AS (SELECT cur AS id FROM up WHERE parent IS NULL),
down(cid, depth) AS (
    SELECT id, 0 FROM root
    UNION ALL
    SELECT c.customer_id, down.depth + 1
    FROM down JOIN profile.customers c ON c.parent_id = down.cid WHERE down.depth < 1000
)
"""
_PROFILE = (
    CLUSTER_CTE
    + """SELECT
    (SELECT id FROM root) AS customer_id,
    (SELECT created_at FROM profile.customers WHERE customer_id = (SELECT id FROM root))
        AS created_at,
    (SELECT coalesce(jsonb_agg(cid ORDER BY cid), '[]') FROM down) AS members,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
        'type', identifier_type, 'masked', masked, 'rule', rule, 'trust', trust,
        'linked_at', linked_at) ORDER BY linked_at, identifier_key), '[]')
     FROM profile.links WHERE customer_id IN (SELECT cid FROM down)) AS identifiers,
    (SELECT coalesce(jsonb_object_agg(name, jsonb_build_object(
        'value', value, 'source', source, 'channel', channel, 'updated_at', occurred_at)), '{{}}')
     FROM (SELECT DISTINCT ON (name) * FROM profile.traits
           WHERE customer_id IN (SELECT cid FROM down)
           ORDER BY name, occurred_at DESC, event_id DESC) AS t) AS traits,
    (SELECT snapshot FROM profile.scores WHERE customer_id IN (SELECT cid FROM down)
     ORDER BY (customer_id = (SELECT id FROM root)) DESC, updated_at DESC LIMIT 1) AS scores
"""
)
PROFILE_BY_ID = text(
    _PROFILE.format(
        seed="SELECT customer_id, parent_id, 0 FROM profile.customers WHERE customer_id = :id"
    )
)
PROFILE_BY_KEY = text(
    _PROFILE.format(
        seed="SELECT c.customer_id, c.parent_id, 0 FROM profile.links l"
        " JOIN profile.customers c ON c.customer_id = l.customer_id WHERE l.identifier_key = :key"
    )
)


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _profile(row: Any) -> dict[str, Any] | None:
    if row is None or row["customer_id"] is None:
        return None
    customer_id = row["customer_id"]
    scores = _json(row["scores"]) or None
    return {
        "customer_id": customer_id,
        "created_at": row["created_at"],
        "merged_ids": [m for m in _json(row["members"]) if m != customer_id],
        "identifiers": _json(row["identifiers"]),
        "traits": _json(row["traits"]),
        "segments": (scores or {}).get("segments", []),
        "scores": scores,
    }


async def get_profile(*, engine: AsyncEngine, customer_id: str) -> dict[str, Any]:
    """The live customer `customer_id` belongs to (a merged-away id gives the winner)."""
    async with engine.connect() as conn:
        row = (await conn.execute(PROFILE_BY_ID, {"id": customer_id})).mappings().first()
    if (profile := _profile(row)) is None:
        raise NotFound("customer")
    return profile


async def get_profile_by_identifier(*, engine: AsyncEngine, key: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(PROFILE_BY_KEY, {"key": key})).mappings().first()
    if (profile := _profile(row)) is None:
        raise NotFound("customer with that identifier")
    return profile


# The hot read path: the same SQL as a prepared asyncpg statement (cached per connection) on
# a plain asyncpg pool. The SQLAlchemy engine's pre-ping costs a round trip per checkout and
# its execute path as much again, which was half of a lookup's time.
_PROFILE_BY_KEY_NATIVE = str(PROFILE_BY_KEY).replace(":key", "$1")


async def profile_json_by_identifier(*, pool: asyncpg.Pool, key: str) -> bytes:
    """The profile of the live customer holding identifier `key`, serialised (orjson)."""
    row = await pool.fetchrow(_PROFILE_BY_KEY_NATIVE, key)
    if (profile := _profile(row)) is None:
        raise NotFound("customer with that identifier")
    return orjson.dumps(profile)


async def _live_members(conn: AsyncConnection, customer_id: str) -> tuple[str, list[str]]:
    root = (await roots_of(conn, [customer_id])).get(customer_id)
    if root is None:
        raise NotFound("customer")
    return root, list(await members_of(conn, [root]))


def encode_cursor(occurred_at: datetime, event_id: str) -> str:
    raw = orjson.dumps([occurred_at.isoformat(), event_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        occurred, event_id = orjson.loads(raw)
        return datetime.fromisoformat(occurred), str(event_id)
    except (ValueError, TypeError) as error:
        raise BadRequest("cursor", "not a cursor this API returned") from error


async def get_timeline(
    *, engine: AsyncEngine, customer_id: str, cursor: str | None, limit: int
) -> dict[str, Any]:
    """Newest first; `next_cursor` continues after the last item (keyset pagination)."""
    after = decode_cursor(cursor) if cursor else None
    async with engine.connect() as conn:
        root, members = await _live_members(conn, customer_id)
        rows = await conn.execute(
            text(
                "SELECT event_id, customer_id, occurred_at, received_at, type, channel,"
                " touchpoint, source, properties, context FROM profile.timeline"
                " WHERE customer_id = ANY(CAST(:m AS text[]))"
                + (" AND (occurred_at, event_id) < (:o, :e)" if after else "")
                + " ORDER BY occurred_at DESC, event_id DESC LIMIT :n"
            ),
            {"m": members, "n": limit + 1} | ({"o": after[0], "e": after[1]} if after else {}),
        )
        items = [
            {
                "event_id": r.event_id,
                "occurred_at": r.occurred_at,
                "received_at": r.received_at,
                "type": r.type,
                "channel": r.channel,
                "touchpoint": r.touchpoint,
                "source": r.source,
                "via_customer_id": r.customer_id,
                "properties": _json(r.properties),
                "context": _json(r.context),
            }
            for r in rows
        ]
    more = len(items) > limit
    items = items[:limit]
    last = items[-1] if more else None
    return {
        "customer_id": root,
        "items": items,
        "next_cursor": encode_cursor(last["occurred_at"], last["event_id"]) if last else None,
    }


async def explain_merges(*, engine: AsyncEngine, customer_id: str) -> dict[str, Any]:
    """Why these identifiers are one customer: every link and every merge, with its rule."""
    async with engine.connect() as conn:
        root, members = await _live_members(conn, customer_id)
        links = await conn.execute(
            text(
                "SELECT identifier_type, masked, customer_id, event_id, rule, trust, linked_at"
                " FROM profile.links WHERE customer_id = ANY(CAST(:m AS text[]))"
                " ORDER BY linked_at, identifier_key"
            ),
            {"m": members},
        )
        merges = await conn.execute(
            text(
                "SELECT * FROM profile.merges WHERE loser_id = ANY(CAST(:m AS text[]))"
                " OR parent_id = ANY(CAST(:m AS text[])) ORDER BY merged_at, merge_id"
            ),
            {"m": members},
        )
        return {
            "customer_id": root,
            "links": [
                {
                    "identifier": {"type": r.identifier_type, "masked": r.masked},
                    "customer_id": r.customer_id,
                    "event_id": r.event_id,
                    "rule": r.rule,
                    "trust": r.trust,
                    "linked_at": r.linked_at,
                }
                for r in links
            ],
            "merges": [
                {
                    "merge_id": r.merge_id,
                    "winner_id": r.winner_id,
                    "loser_id": r.loser_id,
                    "rule": r.rule,
                    "event_id": r.event_id,
                    "joined_by": {"type": r.joined_by_type, "masked": r.joined_by_masked},
                    "joined_to": {"type": r.joined_to_type, "masked": r.joined_to_masked},
                    "merged_at": r.merged_at,
                    "unmerged_at": r.unmerged_at,
                    "unmerge_reason": r.unmerge_reason,
                    "active": r.unmerged_at is None,
                }
                for r in merges
            ],
        }


async def in_transaction(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with engine.begin() as conn:
                return await work(conn)
        except GraphChanged:
            if attempt == MAX_ATTEMPTS:
                raise
        except DBAPIError as error:
            if sqlstate(error) not in RETRYABLE_SQLSTATES or attempt == MAX_ATTEMPTS:
                raise
        metrics.RETRIES.inc()
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Unmerged:
    unmerge: UnmergeCustomers
    split_from: str  # the live customer the restored one was split from


async def unmerge(*, engine: AsyncEngine, topics: Topics, merge_id: str, reason: str) -> Unmerged:
    """Undo a merge; the announcement is written to the outbox in the same transaction."""

    async def work(conn: AsyncConnection) -> Unmerged:
        repository = PostgresIdentityRepository(conn)
        record = await repository.get_merge(merge_id)
        if record is None:
            raise NotFound("merge")
        await lock_roots(conn, [record.merge.loser_id])
        try:
            planned = await identity_service.unmerge(
                merge_id=merge_id, reason=reason, repository=repository, now=datetime.now(UTC)
            )
        except (MergeNotActiveError, IdentityError) as error:
            raise Conflict(str(error)) from error
        split_from = (await roots_of(conn, [planned.parent_id]))[planned.parent_id]
        await enqueue(conn, change_messages(topics, [unmerged(planned, split_from=split_from)]))
        return Unmerged(planned, split_from)

    result = await in_transaction(engine, work)
    metrics.UNMERGES.inc()
    return result


async def list_quarantine(*, engine: AsyncEngine, status: str, limit: int) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT quarantine_id, customer_id, other_customer_id, event_id, reasons,"
                " joined_by_type, joined_by_masked, status, quarantined_at, decided_at, merge_id"
                " FROM profile.quarantines WHERE status = :s"
                " ORDER BY quarantined_at, quarantine_id LIMIT :n"
            ),
            {"s": status, "n": limit},
        )
        return [
            {
                "quarantine_id": r.quarantine_id,
                "customer_id": r.customer_id,
                "other_customer_id": r.other_customer_id,
                "event_id": r.event_id,
                "reasons": list(r.reasons),
                "joined_by": {"type": r.joined_by_type, "masked": r.joined_by_masked},
                "status": r.status,
                "quarantined_at": r.quarantined_at,
                "decided_at": r.decided_at,
                "merge_id": r.merge_id,
            }
            for r in rows
        ]


RULE_APPROVED = "approved_by_person"


async def decide_quarantine(
    *, engine: AsyncEngine, topics: Topics, quarantine_id: str, approve: bool
) -> MergeCustomers | None:
    """Approve (merge the two customers now) or reject (keep them apart from now on)."""

    async def work(conn: AsyncConnection) -> MergeCustomers | None:
        row = (
            await conn.execute(
                text("SELECT * FROM profile.quarantines WHERE quarantine_id = :q FOR UPDATE"),
                {"q": quarantine_id},
            )
        ).first()
        if row is None:
            raise NotFound("quarantined merge")
        if row.status != "pending":
            raise Conflict(f"quarantined merge already {row.status}")
        now = datetime.now(UTC)
        repository = PostgresIdentityRepository(conn)
        merge = None
        if approve:
            roots = await lock_roots(conn, [row.customer_id, row.other_customer_id])
            a, b = roots[row.customer_id], roots[row.other_customer_id]
            if a != b:
                created = dict(
                    (
                        await conn.execute(
                            text(
                                "SELECT customer_id, created_at FROM profile.customers"
                                " WHERE customer_id = ANY(CAST(:c AS text[]))"
                            ),
                            {"c": [a, b]},
                        )
                    ).all()
                )
                winner, loser = sorted([a, b], key=lambda c: (created[c], c))
                joined = Identifier(row.joined_by_type, row.joined_by_key, row.joined_by_masked)
                merge = MergeCustomers(
                    merge_id=derived_id(quarantine_id, "approved"),
                    loser_id=loser,
                    winner_id=winner,
                    parent_id=winner,
                    event_id=row.event_id,
                    rule=RULE_APPROVED,
                    joined_by=joined,
                    joined_to=joined,
                    merged_at=now,
                )
                await repository.merge(merge)
                await enqueue(conn, change_messages(topics, [merged(merge)]))
        else:
            await repository.separate(row.customer_id, row.other_customer_id, "rejected", now)
        await conn.execute(
            text(
                "UPDATE profile.quarantines SET status = :s, decided_at = :t, merge_id = :m"
                " WHERE quarantine_id = :q"
            ),
            {
                "s": "approved" if approve else "rejected",
                "t": now,
                "m": merge.merge_id if merge else None,
                "q": quarantine_id,
            },
        )
        return merge

    merge = await in_transaction(engine, work)
    metrics.QUARANTINE_DECISIONS.labels(decision="approved" if approve else "rejected").inc()
    if merge is not None:
        metrics.MERGES.labels(rule=RULE_APPROVED).inc()
    return merge


@dataclass(frozen=True, slots=True)
class Erased:
    request_id: str
    customer_ids: tuple[str, ...]  # the live customer and every id merged into it


async def erase(*, engine: AsyncEngine, topics: Topics, customer_id: str) -> Erased:
    """Delete every row naming the customer; keep only keyed hashes of its identifiers so
    later events carrying them are not turned back into a customer."""

    async def work(conn: AsyncConnection) -> Erased:
        roots = await lock_roots(conn, [customer_id])
        if customer_id not in roots:
            raise NotFound("customer")
        members = list(await members_of(conn, [roots[customer_id]]))
        keys = await conn.execute(
            text(
                "SELECT identifier_key FROM profile.links"
                " WHERE customer_id = ANY(CAST(:m AS text[]))"
            ),
            {"m": members},
        )
        await lock(conn, (f"k:{k}" for (k,) in keys))
        await conn.execute(
            text(
                "INSERT INTO profile.suppressions (identifier_key, identifier_type, suppressed_at)"
                " SELECT identifier_key, identifier_type, now() FROM profile.links"
                " WHERE customer_id = ANY(CAST(:m AS text[])) ON CONFLICT DO NOTHING"
            ),
            {"m": members},
        )
        for table, columns in _ERASE_COLUMNS.items():
            condition = " OR ".join(f"{c} = ANY(CAST(:m AS text[]))" for c in columns)
            await conn.execute(
                text(f"DELETE FROM profile.{table} WHERE {condition}"), {"m": members}
            )
        erased = Erased(str(uuid.uuid4()), tuple(sorted(members)))
        announce = erasure_messages(
            topics, customer_ids=erased.customer_ids, request_id=erased.request_id
        )
        await enqueue(conn, announce)
        return erased

    erased = await in_transaction(engine, work)
    metrics.ERASURES.inc()
    return erased


_ERASE_COLUMNS: dict[str, tuple[str, ...]] = {
    "links": ("customer_id",),
    "merges": ("loser_id", "winner_id", "parent_id"),
    "separations": ("customer_a", "customer_b"),
    "quarantines": ("customer_id", "other_customer_id"),
    "processed_events": ("customer_id", "published_to"),
    "timeline": ("customer_id",),
    "traits": ("customer_id",),
    "scores": ("customer_id",),
    "customers": ("customer_id",),
}
assert tuple(_ERASE_COLUMNS) == CUSTOMER_TABLES


_UPSERT_SCORES = (
    "INSERT INTO profile.scores (customer_id, snapshot, updated_at)"
    " SELECT u.c, u.s::jsonb, u.t FROM unnest($1::text[], $2::text[], $3::timestamptz[])"
    " AS u(c, s, t)"
    " WHERE EXISTS (SELECT 1 FROM profile.customers WHERE customer_id = u.c)"
    " ON CONFLICT (customer_id) DO UPDATE"
    " SET snapshot = excluded.snapshot, updated_at = excluded.updated_at"
    " WHERE excluded.updated_at >= profile.scores.updated_at"
)
_DELETE_SCORES = "DELETE FROM profile.scores WHERE customer_id = ANY($1::text[])"


async def store_scores(
    *, engine: AsyncEngine, records: list[tuple[str, ScoreSnapshot | None]]
) -> None:
    """Apply records of the compacted scores topic, in topic order, in one transaction: per
    customer only the newest record counts (what compaction would keep), a snapshot being
    stored only for a customer this service knows (an erased or never-seen one is not)
    and only if not older than the stored one, and a tombstone (None) deleting the row."""
    newest: dict[str, ScoreSnapshot | None] = {}
    for customer_id, snapshot in records:
        newest.pop(customer_id, None)  # keep topic order among the survivors
        newest[customer_id] = snapshot
    gone = [c for c, s in newest.items() if s is None]
    kept = [(c, s) for c, s in newest.items() if s is not None]
    async with engine.connect() as sa_conn:
        conn: asyncpg.Connection = (await sa_conn.get_raw_connection()).driver_connection
        async with conn.transaction():
            if gone:
                await conn.execute(_DELETE_SCORES, gone)
            if kept:
                await conn.execute(
                    _UPSERT_SCORES,
                    [c for c, _ in kept],
                    [encode(s).decode() for _, s in kept],
                    [s.updated_at for _, s in kept],
                )
    if gone:
        metrics.SCORES_APPLIED.labels(kind="tombstone").inc(len(gone))
    if kept:
        metrics.SCORES_APPLIED.labels(kind="snapshot").inc(len(kept))
