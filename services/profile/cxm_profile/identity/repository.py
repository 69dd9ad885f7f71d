"""The identity graph as resolution sees it: a small Protocol and an in-memory fake.

The fake is the reference semantics the PostgreSQL adapter (which loads a whole batch into a
`GraphView` and writes its decisions together, see identity/postgres.py) must match:

- `load_facts` returns, for the event's identifier keys, their links, the live customer each
  link's home customer now belongs to, every identifier those live customers hold, which of
  them were separated by an unmerge, and the customer the event_id was resolved to before.
- `apply` writes a `Resolution` atomically and records the event_id (the idempotency key).
  An adapter must lock the identifier keys and live customers it read, and retry the whole
  resolution if they changed, so two workers never decide on stale facts.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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


class MergeHistory(Protocol):
    """What undoing a merge needs (the PostgreSQL adapter resolves set-based per batch, see
    identity/postgres.py, and offers only this part per call)."""

    async def get_merge(self, merge_id: str) -> MergeRecord | None: ...

    async def apply_unmerge(self, unmerge: UnmergeCustomers) -> None: ...


class IdentityRepository(MergeHistory, Protocol):
    async def load_facts(self, *, event_id: str, keys: Sequence[str]) -> GraphFacts: ...

    async def apply(self, resolution: Resolution) -> None: ...


@dataclass(slots=True)
class _CustomerRow:
    created_at: datetime
    parent_id: str | None = None  # set while merged into another customer


class InMemoryIdentityRepository:
    def __init__(self) -> None:
        self.customers: dict[str, _CustomerRow] = {}
        self.links: dict[str, Link] = {}
        self.merges: dict[str, MergeRecord] = {}
        self.quarantines: dict[str, QuarantineMerge] = {}
        self.separations: set[frozenset[str]] = set()
        self.events: dict[str, str] = {}  # event_id -> customer it resolved to

    # -- the Protocol -------------------------------------------------------------------

    async def load_facts(self, *, event_id: str, keys: Sequence[str]) -> GraphFacts:
        return self.facts_for(event_id=event_id, keys=keys)

    async def apply(self, resolution: Resolution) -> None:
        self.commit(resolution)

    async def get_merge(self, merge_id: str) -> MergeRecord | None:
        return self.merges.get(merge_id)

    async def apply_unmerge(self, unmerge: UnmergeCustomers) -> None:
        self.commit_unmerge(unmerge)

    # -- synchronous core, also used directly by tests -----------------------------------

    def root_of(self, customer_id: str) -> str:
        while (parent := self.customers[customer_id].parent_id) is not None:
            customer_id = parent
        return customer_id

    def facts_for(self, *, event_id: str, keys: Sequence[str]) -> GraphFacts:
        previous = self.events.get(event_id)
        links = {key: self.links[key] for key in keys if key in self.links}
        roots = {link.customer_id: self.root_of(link.customer_id) for link in links.values()}
        live = set(roots.values())
        held = self.identifiers_by_customer()
        customers = {
            root: CustomerFacts(root, self.customers[root].created_at, tuple(held[root]))
            for root in live
        }
        separated = frozenset(
            frozenset(self.root_of(c) for c in pair)
            for pair in self.separations
            if {self.root_of(c) for c in pair} <= live
        )
        return GraphFacts(
            previous_customer_id=self.root_of(previous) if previous else None,
            links=links,
            roots=roots,
            customers=customers,
            separated=frozenset(pair for pair in separated if len(pair) == 2),
        )

    def commit(self, resolution: Resolution) -> None:
        if resolution.duplicate or resolution.event_id in self.events:
            return
        for action in resolution.actions:
            match action:
                case CreateCustomer(customer_id=customer_id, created_at=created_at):
                    if customer_id in self.customers:
                        raise IdentityError(f"customer {customer_id} exists")
                    self.customers[customer_id] = _CustomerRow(created_at)
                case LinkIdentifier(link=link):
                    if link.identifier.key in self.links:
                        raise IdentityError("identifier is already linked")
                    self.links[link.identifier.key] = link
                case MergeCustomers() as merge:
                    self._merge(merge)
                case QuarantineMerge() as quarantine:
                    self.quarantines[quarantine.quarantine_id] = quarantine
        if resolution.customer_id is not None:
            self.events[resolution.event_id] = resolution.customer_id

    def commit_unmerge(self, unmerge: UnmergeCustomers) -> None:
        record = self.merges[unmerge.merge_id]
        if record.unmerged_at is not None or self.customers[unmerge.loser_id].parent_id is None:
            raise IdentityError(f"merge {unmerge.merge_id} is not active")
        self.customers[unmerge.loser_id].parent_id = None
        self.merges[unmerge.merge_id] = MergeRecord(record.merge, unmerge.unmerged_at)
        self.separations.add(frozenset({unmerge.loser_id, unmerge.parent_id}))

    def _merge(self, merge: MergeCustomers) -> None:
        loser = self.customers[merge.loser_id]
        if loser.parent_id is not None or self.root_of(merge.parent_id) != merge.winner_id:
            raise IdentityError(f"merge {merge.merge_id} does not match the graph")
        if merge.winner_id == merge.loser_id:
            raise IdentityError("a customer cannot be merged into itself")
        loser.parent_id = merge.parent_id
        self.merges[merge.merge_id] = MergeRecord(merge)

    # -- views for tests and for explaining a customer -----------------------------------

    def identifiers_by_customer(self) -> dict[str, list[Identifier]]:
        """Live customer id -> every identifier it holds (live customers without any too)."""
        held: dict[str, list[Identifier]] = defaultdict(list)
        for customer_id, row in self.customers.items():
            if row.parent_id is None:
                held[customer_id] = []
        for link in self.links.values():
            held[self.root_of(link.customer_id)].append(link.identifier)
        return held

    def customer_of(self, key: str) -> str | None:
        link = self.links.get(key)
        return self.root_of(link.customer_id) if link else None

    def clusters(self) -> frozenset[frozenset[str]]:
        """The partition of identifier keys into live customers (customer ids left out)."""
        return frozenset(
            frozenset(i.key for i in identifiers)
            for identifiers in self.identifiers_by_customer().values()
            if identifiers
        )

    def active_merges(self) -> list[MergeCustomers]:
        return [r.merge for r in self.merges.values() if r.unmerged_at is None]
