"""What a decision needs to know of a customer, in one prepared statement on the read pool.

The live customer (following merges to the root, as the profile lookup does), its current
segments (from the latest score snapshot the scores agent stored; the root's own snapshot
first, as in the profile), and, when the caller named the customer by id, one of its
identifier keys so an exposure event can lead back to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import orjson

from cxm_profile.profiles.service import CLUSTER_CTE

_DECISION = (
    CLUSTER_CTE
    + """SELECT
    (SELECT id FROM root) AS customer_id,
    (SELECT snapshot -> 'segments' FROM profile.scores
     WHERE customer_id IN (SELECT cid FROM down)
     ORDER BY (customer_id = (SELECT id FROM root)) DESC, updated_at DESC LIMIT 1) AS segments
    {extra}
"""
)
# The root's oldest link first: any link of the cluster leads to the root, the root's own
# the most directly.
_LEAD_KEY = """,
    (SELECT identifier_type || ':' || identifier_key FROM profile.links
     WHERE customer_id IN (SELECT cid FROM down)
     ORDER BY (customer_id = (SELECT id FROM root)) DESC, linked_at, identifier_key LIMIT 1)
        AS lead"""

BY_KEY = _DECISION.format(
    seed="SELECT c.customer_id, c.parent_id, 0 FROM profile.links l"
    " JOIN profile.customers c ON c.customer_id = l.customer_id WHERE l.identifier_key = $1",
    extra="",
)
BY_ID = _DECISION.format(
    seed="SELECT customer_id, parent_id, 0 FROM profile.customers WHERE customer_id = $1",
    extra=_LEAD_KEY,
)


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    segments: tuple[str, ...]
    lead: tuple[str, str] | None  # (identifier type, key) that resolves to the customer


def _customer(row: asyncpg.Record | None, lead: tuple[str, str] | None) -> Customer | None:
    if row is None or row["customer_id"] is None:
        return None
    raw = row["segments"]
    segments = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return Customer(
        customer_id=row["customer_id"],
        segments=tuple(s for s in segments or () if isinstance(s, str)),
        lead=lead,
    )


async def customer_by_identifier(
    *, pool: asyncpg.Pool, identifier_type: str, key: str
) -> Customer | None:
    """The live customer holding the identifier with keyed hash `key` (None: nobody)."""
    row = await pool.fetchrow(BY_KEY, key)
    return _customer(row, (identifier_type, key))


async def customer_by_id(*, pool: asyncpg.Pool, customer_id: str) -> Customer | None:
    """The live customer `customer_id` is (or was merged into); None if never known."""
    row = await pool.fetchrow(BY_ID, customer_id)
    if row is None or row["customer_id"] is None:
        return None
    lead = row["lead"]
    type_, _, key = lead.partition(":") if lead else ("", "", "")
    return _customer(row, (type_, key) if lead else None)
