"""The identity graph in PostgreSQL.

Resolution is set-based, one transaction per batch of events, on the raw asyncpg connection
(the hot path; SQLAlchemy's statement layer cost more than the database): the caller locks
every event id and identifier key of the batch (`lock_names`, sorted, so two workers never wait
on each other in a cycle); `load_view` reads in one go the links of all those keys, the live
customers they reach, locks those customers, and reads everything resolution needs about them
again (members, identifiers, created_at, separations). If another transaction merged or
unmerged one of them in between, the roots differ and it raises `GraphChanged` so the caller
retries on fresh facts. Events are decided in memory against that `GraphView`, then
`write_decisions` writes all of the batch's customers, links, merges and quarantines in a few
array statements. Writes check their preconditions (`parent_id IS NULL`) so a stale decision
fails instead of losing a link.

`PostgresIdentityRepository` (on a SQLAlchemy connection) is the merge history used by
unmerge, approve and reject.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cxm_profile.identity.errors import IdentityError
from cxm_profile.identity.identifiers import Identifier
from cxm_profile.identity.models import (
    CreateCustomer,
    Link,
    LinkIdentifier,
    MergeCustomers,
    MergeRecord,
    QuarantineMerge,
    Resolution,
    UnmergeCustomers,
)
from cxm_profile.identity.rules import Trust
from cxm_profile.identity.view import GraphView


class GraphChanged(IdentityError):
    """The facts read are stale (a concurrent transaction changed them): retry."""


_LOCK = text(
    "SELECT pg_advisory_xact_lock(h) FROM ("
    " SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(CAST(:keys AS text[])) AS k"
    " ORDER BY h) AS s"
)

_ROOTS = text(
    """
    WITH RECURSIVE up(start, cur, parent, depth) AS (
        SELECT customer_id, customer_id, parent_id, 0 FROM profile.customers
        WHERE customer_id = ANY(CAST(:ids AS text[]))
        UNION ALL
        SELECT up.start, c.customer_id, c.parent_id, up.depth + 1
        FROM up JOIN profile.customers c ON c.customer_id = up.parent
        WHERE up.depth < 1000
    )
    SELECT start, cur FROM up WHERE parent IS NULL
    """
)

_MEMBERS = text(
    """
    WITH RECURSIVE down(root, cid, depth) AS (
        SELECT customer_id, customer_id, 0 FROM profile.customers
        WHERE customer_id = ANY(CAST(:roots AS text[]))
        UNION ALL
        SELECT down.root, c.customer_id, down.depth + 1
        FROM down JOIN profile.customers c ON c.parent_id = down.cid
        WHERE down.depth < 1000
    )
    SELECT root, cid FROM down
    """
)


async def lock(conn: AsyncConnection, names: Iterable[str]) -> None:
    names = sorted(set(names))
    if names:
        await conn.execute(_LOCK, {"keys": names})


async def roots_of(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, str]:
    ids = list(set(ids))
    if not ids:
        return {}
    rows = await conn.execute(_ROOTS, {"ids": ids})
    return {start: root for start, root in rows}


async def members_of(conn: AsyncConnection, roots: Iterable[str]) -> dict[str, str]:
    """Every customer id (merged-away ones too) -> the live root it belongs to."""
    roots = list(set(roots))
    if not roots:
        return {}
    rows = await conn.execute(_MEMBERS, {"roots": roots})
    return {cid: root for root, cid in rows}


def _identifier(type_: str, key: str, masked: str) -> Identifier:
    return Identifier(type_, key, masked)


class PostgresIdentityRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # -- merge history (unmerge, approve) ----------------------------------------------

    async def get_merge(self, merge_id: str) -> MergeRecord | None:
        r = (
            await self.conn.execute(
                text("SELECT * FROM profile.merges WHERE merge_id = :m"), {"m": merge_id}
            )
        ).first()
        if r is None:
            return None
        return MergeRecord(merge_of_row(r._mapping), r.unmerged_at)

    async def merge(self, merge: MergeCustomers) -> None:
        if merge.loser_id == merge.winner_id:
            raise IdentityError("a customer cannot be merged into itself")
        result = await self.conn.execute(
            text(
                "UPDATE profile.customers SET parent_id = :p, updated_at = :t"
                " WHERE customer_id = :l AND parent_id IS NULL"
            ),
            {"p": merge.parent_id, "t": merge.merged_at, "l": merge.loser_id},
        )
        if result.rowcount != 1:
            raise GraphChanged(f"merge {merge.merge_id}: the loser is no longer live")
        await self.conn.execute(
            text(
                "INSERT INTO profile.merges (merge_id, loser_id, winner_id, parent_id, event_id,"
                " rule, joined_by_type, joined_by_key, joined_by_masked, joined_to_type,"
                " joined_to_key, joined_to_masked, merged_at) VALUES (:m, :l, :w, :p, :e, :r,"
                " :bt, :bk, :bm, :tt, :tk, :tm, :t)"
            ),
            {
                "m": merge.merge_id,
                "l": merge.loser_id,
                "w": merge.winner_id,
                "p": merge.parent_id,
                "e": merge.event_id,
                "r": merge.rule,
                "bt": merge.joined_by.type,
                "bk": merge.joined_by.key,
                "bm": merge.joined_by.masked,
                "tt": merge.joined_to.type,
                "tk": merge.joined_to.key,
                "tm": merge.joined_to.masked,
                "t": merge.merged_at,
            },
        )

    async def apply_unmerge(self, unmerge: UnmergeCustomers) -> None:
        result = await self.conn.execute(
            text(
                "UPDATE profile.customers SET parent_id = NULL, updated_at = :t"
                " WHERE customer_id = :l AND parent_id IS NOT NULL"
            ),
            {"t": unmerge.unmerged_at, "l": unmerge.loser_id},
        )
        if result.rowcount != 1:
            raise IdentityError(f"merge {unmerge.merge_id} is not active")
        await self.conn.execute(
            text(
                "UPDATE profile.merges SET unmerged_at = :t, unmerge_reason = :r"
                " WHERE merge_id = :m AND unmerged_at IS NULL"
            ),
            {"t": unmerge.unmerged_at, "r": unmerge.reason, "m": unmerge.merge_id},
        )
        await self.separate(unmerge.loser_id, unmerge.parent_id, "unmerged", unmerge.unmerged_at)

    async def separate(self, a: str, b: str, reason: str, at: datetime) -> None:
        await self.conn.execute(
            text(
                "INSERT INTO profile.separations (customer_a, customer_b, reason, separated_at)"
                " VALUES (:a, :b, :r, :t) ON CONFLICT DO NOTHING"
            ),
            {"a": min(a, b), "b": max(a, b), "r": reason, "t": at},
        )


async def lock_roots(conn: AsyncConnection, customer_ids: Iterable[str]) -> dict[str, str]:
    """Lock the live customers of `customer_ids` and return id -> root, stable until commit."""
    roots = await roots_of(conn, customer_ids)
    await lock(conn, (f"c:{r}" for r in roots.values()))
    if await roots_of(conn, roots) != roots:
        raise GraphChanged("a customer was merged or unmerged meanwhile")
    return roots


def merge_of_row(r: Any) -> MergeCustomers:
    """A `profile.merges` row (any mapping of its columns) as the decision it recorded."""
    return MergeCustomers(
        merge_id=r["merge_id"],
        loser_id=r["loser_id"],
        winner_id=r["winner_id"],
        parent_id=r["parent_id"],
        event_id=r["event_id"],
        rule=r["rule"],
        joined_by=_identifier(r["joined_by_type"], r["joined_by_key"], r["joined_by_masked"]),
        joined_to=_identifier(r["joined_to_type"], r["joined_to_key"], r["joined_to_masked"]),
        merged_at=r["merged_at"],
    )


# -- set-based resolution on the raw asyncpg connection ------------------------------------

_LOCK_NAMES = (
    "SELECT pg_advisory_xact_lock(h) FROM ("
    " SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k"
    " ORDER BY h) AS s"
)

_PROCESSED = (
    "SELECT event_id, customer_id FROM profile.processed_events WHERE event_id = ANY($1::text[])"
)

_ROOTS_OF = """
    WITH RECURSIVE up(start, cur, parent, depth) AS (
        SELECT customer_id, customer_id, parent_id, 0 FROM profile.customers
        WHERE customer_id = ANY($1::text[])
        UNION ALL
        SELECT up.start, c.customer_id, c.parent_id, up.depth + 1
        FROM up JOIN profile.customers c ON c.customer_id = up.parent
        WHERE up.depth < 1000
    )
    SELECT start, cur FROM up WHERE parent IS NULL
"""

# The batch's links with the live customer each link's home customer belongs to: one trip.
_LINKS_AND_ROOTS = """
    WITH RECURSIVE l AS (
        SELECT identifier_key, identifier_type, masked, customer_id, event_id, rule, trust,
               linked_at
        FROM profile.links WHERE identifier_key = ANY($1::text[])
    ),
    up(start, cur, parent, depth) AS (
        SELECT customer_id, customer_id, parent_id, 0 FROM profile.customers
        WHERE customer_id IN (SELECT customer_id FROM l)
        UNION ALL
        SELECT up.start, c.customer_id, c.parent_id, up.depth + 1
        FROM up JOIN profile.customers c ON c.customer_id = up.parent
        WHERE up.depth < 1000
    )
    SELECT l.*, up.cur AS root FROM l JOIN up ON up.start = l.customer_id
    WHERE up.parent IS NULL
"""

# After locking the live customers: their roots again (to detect a concurrent merge) and
# everything resolution needs about them (members, identifiers, created_at, separations).
_FACTS = """
    WITH RECURSIVE up(start, cur, parent, depth) AS (
        SELECT customer_id, customer_id, parent_id, 0 FROM profile.customers
        WHERE customer_id = ANY($1::text[])
        UNION ALL
        SELECT up.start, c.customer_id, c.parent_id, up.depth + 1
        FROM up JOIN profile.customers c ON c.customer_id = up.parent
        WHERE up.depth < 1000
    ),
    down(root, cid, depth) AS (
        SELECT customer_id, customer_id, 0 FROM profile.customers
        WHERE customer_id = ANY($2::text[])
        UNION ALL
        SELECT down.root, c.customer_id, down.depth + 1
        FROM down JOIN profile.customers c ON c.parent_id = down.cid
        WHERE down.depth < 1000
    )
    SELECT
        (SELECT coalesce(jsonb_object_agg(start, cur), '{}') FROM up WHERE parent IS NULL)::text
            AS roots,
        (SELECT coalesce(jsonb_object_agg(cid, root), '{}') FROM down)::text AS members,
        (SELECT coalesce(jsonb_agg(jsonb_build_array(l.identifier_key, l.identifier_type,
                l.masked, l.customer_id) ORDER BY l.linked_at, l.identifier_key), '[]')
         FROM profile.links l WHERE l.customer_id IN (SELECT cid FROM down))::text AS held,
        (SELECT coalesce(jsonb_object_agg(customer_id, created_at), '{}')
         FROM profile.customers WHERE customer_id = ANY($2::text[]))::text AS created,
        (SELECT coalesce(jsonb_agg(jsonb_build_array(customer_a, customer_b)), '[]')
         FROM profile.separations
         WHERE customer_a IN (SELECT cid FROM down) AND customer_b IN (SELECT cid FROM down)
        )::text AS separated
"""

_MERGES_OF_EVENTS = (
    "SELECT * FROM profile.merges WHERE event_id = ANY($1::text[]) ORDER BY merge_id"
)

_INSERT_CUSTOMERS = (
    "INSERT INTO profile.customers (customer_id, created_at, updated_at, created_by_event)"
    " SELECT c, t, t, e FROM unnest($1::text[], $2::timestamptz[], $3::text[]) AS u(c, t, e)"
)
_INSERT_LINKS = (
    "INSERT INTO profile.links (identifier_key, identifier_type, masked, customer_id,"
    " event_id, rule, trust, linked_at) SELECT * FROM unnest($1::text[], $2::text[],"
    " $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[])"
)
# Only a loser still live is merged; the count tells a stale decision from a good one.
_MERGE_CUSTOMERS = (
    "WITH m AS (UPDATE profile.customers c SET parent_id = u.p, updated_at = u.t"
    " FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(l, p, t)"
    " WHERE c.customer_id = u.l AND c.parent_id IS NULL RETURNING 1)"
    " SELECT count(*) FROM m"
)
_INSERT_MERGES = (
    "INSERT INTO profile.merges (merge_id, loser_id, winner_id, parent_id, event_id, rule,"
    " joined_by_type, joined_by_key, joined_by_masked, joined_to_type, joined_to_key,"
    " joined_to_masked, merged_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[],"
    " $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],"
    " $11::text[], $12::text[], $13::timestamptz[])"
)
_INSERT_QUARANTINE = (
    "INSERT INTO profile.quarantines (quarantine_id, customer_id, other_customer_id,"
    " event_id, reasons, joined_by_type, joined_by_key, joined_by_masked, quarantined_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (quarantine_id) DO NOTHING"
)


async def lock_names(conn: asyncpg.Connection, names: Iterable[str]) -> None:
    """Transaction-scoped advisory locks on `names`, taken in one sorted statement."""
    names = sorted(set(names))
    if names:
        await conn.execute(_LOCK_NAMES, names)


async def load_view(
    conn: asyncpg.Connection, *, event_ids: Sequence[str], keys: Sequence[str]
) -> GraphView:
    """Everything a batch with these events and identifier keys can reach, in four trips.

    The caller holds the locks on `e:<event_id>` and `k:<key>`; this locks `c:<customer>` of
    every live customer found, and raises `GraphChanged` if one changed before it was locked.
    """
    view = GraphView()
    processed = await conn.fetch(_PROCESSED, list(event_ids)) if event_ids else []
    if processed:
        # Duplicates report the live customer their event went to: it may have been merged.
        previous = {r["customer_id"] for r in processed}
        roots = {r["start"]: r["cur"] for r in await conn.fetch(_ROOTS_OF, list(previous))}
        for r in processed:
            view.add_event(r["event_id"], r["customer_id"])
            view.add_member(r["customer_id"], roots.get(r["customer_id"], r["customer_id"]))
    link_roots: dict[str, str] = {}
    for r in await conn.fetch(_LINKS_AND_ROOTS, list(keys)) if keys else []:
        view.add_link(
            Link(
                _identifier(r["identifier_type"], r["identifier_key"], r["masked"]),
                r["customer_id"],
                r["event_id"],
                r["rule"],
                Trust(r["trust"]),
                r["linked_at"],
            )
        )
        link_roots[r["customer_id"]] = r["root"]
    if not link_roots:
        return view
    live = sorted(set(link_roots.values()))
    await lock_names(conn, (f"c:{root}" for root in live))
    row = await conn.fetchrow(_FACTS, list(link_roots), live)
    if orjson.loads(row["roots"]) != link_roots:
        raise GraphChanged("a customer read was merged or unmerged meanwhile")
    member_root: dict[str, str] = orjson.loads(row["members"])
    for customer_id, root in member_root.items():
        view.add_member(customer_id, root)
    held: dict[str, list[Identifier]] = defaultdict(list)
    for key, type_, masked, customer_id in orjson.loads(row["held"]):
        held[member_root[customer_id]].append(_identifier(type_, key, masked))
    created = orjson.loads(row["created"])
    for root in live:
        view.add_customer(root, datetime.fromisoformat(created[root]), held[root])
    for a, b in orjson.loads(row["separated"]):
        view.add_separation(a, b)
    return view


async def merges_of_events(
    conn: asyncpg.Connection, event_ids: Sequence[str]
) -> dict[str, tuple[MergeCustomers, ...]]:
    """The merges recorded for these events (a redelivered event announces them again)."""
    found: dict[str, list[MergeCustomers]] = defaultdict(list)
    if event_ids:
        for r in await conn.fetch(_MERGES_OF_EVENTS, list(event_ids)):
            found[r["event_id"]].append(merge_of_row(r))
    return {event_id: tuple(merges) for event_id, merges in found.items()}


async def write_decisions(conn: asyncpg.Connection, resolutions: Iterable[Resolution]) -> None:
    """Write the graph changes of a batch's resolutions: a few array statements in all.

    Customers go first (links and merges refer to them), then links, then merges, which only
    apply to losers still live: a stale decision raises `GraphChanged` instead of losing a link.
    """
    creates: list[CreateCustomer] = []
    links: list[Link] = []
    merges: list[MergeCustomers] = []
    quarantines: list[QuarantineMerge] = []
    for resolution in resolutions:
        if resolution.duplicate or resolution.customer_id is None:
            continue
        for action in resolution.actions:
            match action:
                case CreateCustomer() as create:
                    creates.append(create)
                case LinkIdentifier(link=link):
                    links.append(link)
                case MergeCustomers() as merge:
                    merges.append(merge)
                case QuarantineMerge() as quarantine:
                    quarantines.append(quarantine)
    if creates:
        await conn.execute(
            _INSERT_CUSTOMERS,
            [c.customer_id for c in creates],
            [c.created_at for c in creates],
            [c.event_id for c in creates],
        )
    if links:
        await conn.execute(
            _INSERT_LINKS,
            [link.identifier.key for link in links],
            [link.identifier.type for link in links],
            [link.identifier.masked for link in links],
            [link.customer_id for link in links],
            [link.event_id for link in links],
            [link.rule for link in links],
            [str(link.trust) for link in links],
            [link.linked_at for link in links],
        )
    if merges:
        await _write_merges(conn, merges)
    if quarantines:
        await conn.executemany(
            _INSERT_QUARANTINE,
            [
                (
                    q.quarantine_id,
                    q.customer_id,
                    q.other_customer_id,
                    q.event_id,
                    list(q.reasons),
                    q.joined_by.type,
                    q.joined_by.key,
                    q.joined_by.masked,
                    q.quarantined_at,
                )
                for q in quarantines
            ],
        )


async def _write_merges(conn: asyncpg.Connection, merges: Sequence[MergeCustomers]) -> None:
    if any(m.loser_id == m.winner_id for m in merges):
        raise IdentityError("a customer cannot be merged into itself")
    merged = await conn.fetchval(
        _MERGE_CUSTOMERS,
        [m.loser_id for m in merges],
        [m.parent_id for m in merges],
        [m.merged_at for m in merges],
    )
    if merged != len(merges):
        raise GraphChanged("a merge's loser is no longer live")
    await conn.execute(
        _INSERT_MERGES,
        [m.merge_id for m in merges],
        [m.loser_id for m in merges],
        [m.winner_id for m in merges],
        [m.parent_id for m in merges],
        [m.event_id for m in merges],
        [m.rule for m in merges],
        [m.joined_by.type for m in merges],
        [m.joined_by.key for m in merges],
        [m.joined_by.masked for m in merges],
        [m.joined_to.type for m in merges],
        [m.joined_to.key for m in merges],
        [m.joined_to.masked for m in merges],
        [m.merged_at for m in merges],
    )
