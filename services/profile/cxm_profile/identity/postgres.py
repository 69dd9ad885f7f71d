"""The identity graph in PostgreSQL: the `IdentityRepository` adapter.

One instance works inside one transaction (`conn` is in `engine.begin()`), so reading the
facts, deciding and applying are atomic. Concurrency: `load_facts` takes transaction-scoped
advisory locks on the event id and every identifier key (sorted, so two workers never wait
on each other in a cycle), reads, then locks the live customers it found and reads again;
if another transaction merged one of them in between, the roots differ and it raises
`GraphChanged` so the caller retries the whole resolution on fresh facts. Writes check their
preconditions (`parent_id IS NULL`) so a stale decision fails instead of losing a link.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from cxm_profile.identity.errors import IdentityError
from cxm_profile.identity.identifiers import Identifier
from cxm_profile.identity.models import (
    CreateCustomer,
    CustomerFacts,
    GraphFacts,
    Link,
    LinkIdentifier,
    MergeCustomers,
    MergeRecord,
    QuarantineMerge,
    Resolution,
    UnmergeCustomers,
)
from cxm_profile.identity.rules import Trust


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


# The event's links with the live customer each link's home customer belongs to: one trip.
_LINKS_AND_ROOTS = text(
    """
    WITH RECURSIVE l AS (
        SELECT identifier_key, identifier_type, masked, customer_id, event_id, rule, trust,
               linked_at
        FROM profile.links WHERE identifier_key = ANY(CAST(:keys AS text[]))
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
)

# After locking the live customers: their roots again (to detect a concurrent merge) and
# everything resolution needs about them (members, identifiers, created_at, separations).
_FACTS = text(
    """
    WITH RECURSIVE up(start, cur, parent, depth) AS (
        SELECT customer_id, customer_id, parent_id, 0 FROM profile.customers
        WHERE customer_id = ANY(CAST(:ids AS text[]))
        UNION ALL
        SELECT up.start, c.customer_id, c.parent_id, up.depth + 1
        FROM up JOIN profile.customers c ON c.customer_id = up.parent
        WHERE up.depth < 1000
    ),
    down(root, cid, depth) AS (
        SELECT customer_id, customer_id, 0 FROM profile.customers
        WHERE customer_id = ANY(CAST(:roots AS text[]))
        UNION ALL
        SELECT down.root, c.customer_id, down.depth + 1
        FROM down JOIN profile.customers c ON c.parent_id = down.cid
        WHERE down.depth < 1000
    )
    SELECT
        (SELECT coalesce(jsonb_object_agg(start, cur), '{}') FROM up WHERE parent IS NULL)
            AS roots,
        (SELECT coalesce(jsonb_object_agg(cid, root), '{}') FROM down) AS members,
        (SELECT coalesce(jsonb_agg(jsonb_build_array(l.identifier_key, l.identifier_type,
                l.masked, l.customer_id) ORDER BY l.linked_at, l.identifier_key), '[]')
         FROM profile.links l WHERE l.customer_id IN (SELECT cid FROM down)) AS held,
        (SELECT coalesce(jsonb_object_agg(customer_id, created_at), '{}')
         FROM profile.customers WHERE customer_id = ANY(CAST(:roots AS text[]))) AS created,
        (SELECT coalesce(jsonb_agg(jsonb_build_array(customer_a, customer_b)), '[]')
         FROM profile.separations
         WHERE customer_a IN (SELECT cid FROM down) AND customer_b IN (SELECT cid FROM down))
            AS separated
    """
)


_INSERT_LINKS = text(
    "INSERT INTO profile.links (identifier_key, identifier_type, masked, customer_id,"
    " event_id, rule, trust, linked_at) SELECT * FROM unnest(CAST(:k AS text[]),"
    " CAST(:ty AS text[]), CAST(:m AS text[]), CAST(:c AS text[]), CAST(:e AS text[]),"
    " CAST(:r AS text[]), CAST(:tr AS text[]), CAST(:t AS timestamptz[]))"
)


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


@dataclass(slots=True)
class BatchState:
    """Shared by the resolutions of one batch transaction (see stream/service.py): the caller
    has locked every event id and identifier key of the batch and read which events were
    processed before; processed-event rows are written by the caller in one statement."""

    processed: dict[str, str] = field(default_factory=dict)  # event_id -> customer resolved to
    new_processed: dict[str, str] = field(default_factory=dict)


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
    def __init__(self, conn: AsyncConnection, *, batch: BatchState | None = None) -> None:
        self.conn = conn
        self.batch = batch
        self.facts: GraphFacts | None = None

    # -- reads ---------------------------------------------------------------------------

    async def load_facts(self, *, event_id: str, keys: Sequence[str]) -> GraphFacts:
        conn = self.conn
        if self.batch is None:
            await lock(conn, [f"e:{event_id}", *(f"k:{k}" for k in keys)])
            row = (
                await conn.execute(
                    text("SELECT customer_id FROM profile.processed_events WHERE event_id = :e"),
                    {"e": event_id},
                )
            ).first()
            previous_id = None if row is None else row[0]
        else:
            previous_id = self.batch.processed.get(event_id)
        if previous_id is not None:
            previous = (await roots_of(conn, [previous_id])).get(previous_id, previous_id)
            self.facts = GraphFacts(previous_customer_id=previous)
            return self.facts
        links, roots = await self._links(keys)
        if not roots:
            self.facts = GraphFacts(links=links)
            return self.facts
        await lock(conn, (f"c:{r}" for r in roots.values()))
        self.facts = await self._facts(links, roots)
        return self.facts

    async def _links(self, keys: Sequence[str]) -> tuple[dict[str, Link], dict[str, str]]:
        if not keys:
            return {}, {}
        rows = await self.conn.execute(_LINKS_AND_ROOTS, {"keys": list(keys)})
        links: dict[str, Link] = {}
        roots: dict[str, str] = {}
        for r in rows:
            links[r.identifier_key] = Link(
                _identifier(r.identifier_type, r.identifier_key, r.masked),
                r.customer_id,
                r.event_id,
                r.rule,
                Trust(r.trust),
                r.linked_at,
            )
            roots[r.customer_id] = r.root
        return links, roots

    async def _facts(self, links: dict[str, Link], roots: dict[str, str]) -> GraphFacts:
        live = sorted(set(roots.values()))
        row = (await self.conn.execute(_FACTS, {"ids": list(roots), "roots": live})).one()
        if _json(row.roots) != roots:
            raise GraphChanged("a customer read was merged or unmerged meanwhile")
        member_root: dict[str, str] = _json(row.members)
        held: dict[str, list[Identifier]] = defaultdict(list)
        for key, type_, masked, customer_id in _json(row.held):
            held[member_root[customer_id]].append(_identifier(type_, key, masked))
        created = {c: datetime.fromisoformat(t) for c, t in _json(row.created).items()}
        separated = frozenset(
            pair
            for a, b in _json(row.separated)
            if len(pair := frozenset({member_root[a], member_root[b]})) == 2
        )
        customers = {root: CustomerFacts(root, created[root], tuple(held[root])) for root in live}
        return GraphFacts(links=links, roots=roots, customers=customers, separated=separated)

    async def get_merge(self, merge_id: str) -> MergeRecord | None:
        r = (
            await self.conn.execute(
                text("SELECT * FROM profile.merges WHERE merge_id = :m"), {"m": merge_id}
            )
        ).first()
        if r is None:
            return None
        merge = MergeCustomers(
            merge_id=r.merge_id,
            loser_id=r.loser_id,
            winner_id=r.winner_id,
            parent_id=r.parent_id,
            event_id=r.event_id,
            rule=r.rule,
            joined_by=_identifier(r.joined_by_type, r.joined_by_key, r.joined_by_masked),
            joined_to=_identifier(r.joined_to_type, r.joined_to_key, r.joined_to_masked),
            merged_at=r.merged_at,
        )
        return MergeRecord(merge, r.unmerged_at)

    # -- writes --------------------------------------------------------------------------

    async def apply(self, resolution: Resolution) -> None:
        if resolution.duplicate or resolution.customer_id is None:
            return
        links: list[Link] = []
        for action in resolution.actions:
            if not isinstance(action, LinkIdentifier) and links:
                await self.insert_links(links)
                links = []
            match action:
                case CreateCustomer() as create:
                    await self.conn.execute(
                        text(
                            "INSERT INTO profile.customers"
                            " (customer_id, created_at, updated_at, created_by_event)"
                            " VALUES (:c, :t, :t, :e)"
                        ),
                        {"c": create.customer_id, "t": create.created_at, "e": create.event_id},
                    )
                case LinkIdentifier(link=link):
                    links.append(link)
                case MergeCustomers() as merge:
                    await self.merge(merge)
                case QuarantineMerge() as quarantine:
                    await self._quarantine(quarantine)
        await self.insert_links(links)
        if self.batch is not None:
            self.batch.new_processed[resolution.event_id] = resolution.customer_id
            self.batch.processed[resolution.event_id] = resolution.customer_id
            return
        await self.conn.execute(
            text(
                "INSERT INTO profile.processed_events (event_id, customer_id, processed_at)"
                " VALUES (:e, :c, now())"
            ),
            {"e": resolution.event_id, "c": resolution.customer_id},
        )

    async def insert_links(self, links: Sequence[Link]) -> None:
        # One statement over arrays: executemany costs a round trip per row.
        if not links:
            return
        await self.conn.execute(
            _INSERT_LINKS,
            {
                "k": [link.identifier.key for link in links],
                "ty": [link.identifier.type for link in links],
                "m": [link.identifier.masked for link in links],
                "c": [link.customer_id for link in links],
                "e": [link.event_id for link in links],
                "r": [link.rule for link in links],
                "tr": [str(link.trust) for link in links],
                "t": [link.linked_at for link in links],
            },
        )

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

    async def _quarantine(self, q: QuarantineMerge) -> None:
        await self.conn.execute(
            text(
                "INSERT INTO profile.quarantines (quarantine_id, customer_id, other_customer_id,"
                " event_id, reasons, joined_by_type, joined_by_key, joined_by_masked,"
                " quarantined_at) VALUES (:q, :c, :o, :e, :r, :bt, :bk, :bm, :t)"
                " ON CONFLICT (quarantine_id) DO NOTHING"
            ),
            {
                "q": q.quarantine_id,
                "c": q.customer_id,
                "o": q.other_customer_id,
                "e": q.event_id,
                "r": list(q.reasons),
                "bt": q.joined_by.type,
                "bk": q.joined_by.key,
                "bm": q.joined_by.masked,
                "t": q.quarantined_at,
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
