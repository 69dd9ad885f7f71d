"""Part of the identity graph held in memory while a batch of events is decided: pure, no I/O.

The PostgreSQL adapter loads, in one go, everything the events of a batch can reach: the links
of all their identifier keys, the live customers those links belong to with every identifier
they hold, the separations between those customers and which of the events were resolved
before. Each event is then decided against the view and its decision applied to the view
before the next one is decided, with the semantics of `InMemoryIdentityRepository` (the
reference); the caller writes all decisions out together. Unlike the fake, the view keeps each
live customer's identifiers indexed, so deciding an event costs time in that event's
identifiers, not in the size of the batch.

A batch only adds: customers, links and merges. Nothing in it is unmerged, so a live customer
reached by an event of the batch is one the view loaded or one an earlier event created.
"""

from collections.abc import Sequence
from datetime import datetime

from cxm_profile.identity.errors import IdentityError
from cxm_profile.identity.identifiers import Identifier
from cxm_profile.identity.models import (
    CreateCustomer,
    CustomerFacts,
    GraphFacts,
    Link,
    LinkIdentifier,
    MergeCustomers,
    QuarantineMerge,
    Resolution,
)


class GraphView:
    def __init__(self) -> None:
        self.links: dict[str, Link] = {}  # identifier key -> link (the batch's keys only)
        self.parents: dict[str, str] = {}  # merged-away customer -> customer it hangs under
        self.created: dict[str, datetime] = {}  # customer -> created_at
        self.held: dict[str, list[Identifier]] = {}  # live customer -> identifiers it holds
        self.separations: set[frozenset[str]] = set()
        self.events: dict[str, str] = {}  # event_id -> customer it was resolved to

    # -- loading ---------------------------------------------------------------------------

    def add_customer(
        self, customer_id: str, created_at: datetime, identifiers: Sequence[Identifier]
    ) -> None:
        """A live customer with every identifier it (and everything merged into it) holds."""
        self.created[customer_id] = created_at
        self.held[customer_id] = list(identifiers)

    def add_member(self, customer_id: str, root_id: str) -> None:
        """A customer merged (perhaps through others) into the live customer `root_id`."""
        if customer_id == root_id:
            self.parents.pop(customer_id, None)
        else:
            self.parents[customer_id] = root_id

    def add_link(self, link: Link) -> None:
        self.links[link.identifier.key] = link

    def add_separation(self, a: str, b: str) -> None:
        self.separations.add(frozenset({a, b}))

    def add_event(self, event_id: str, customer_id: str) -> None:
        self.events[event_id] = customer_id

    # -- the resolution side of IdentityRepository -----------------------------------------

    async def load_facts(self, *, event_id: str, keys: Sequence[str]) -> GraphFacts:
        return self.facts_for(event_id=event_id, keys=keys)

    async def apply(self, resolution: Resolution) -> None:
        self.commit(resolution)

    # -- synchronous core ------------------------------------------------------------------

    def root_of(self, customer_id: str) -> str:
        while (parent := self.parents.get(customer_id)) is not None:
            customer_id = parent
        return customer_id

    def facts_for(self, *, event_id: str, keys: Sequence[str]) -> GraphFacts:
        previous = self.events.get(event_id)
        if previous is not None:
            return GraphFacts(previous_customer_id=self.root_of(previous))
        links = {key: self.links[key] for key in keys if key in self.links}
        roots = {link.customer_id: self.root_of(link.customer_id) for link in links.values()}
        live = set(roots.values())
        customers = {
            root: CustomerFacts(root, self.created[root], tuple(self.held[root])) for root in live
        }
        separated = frozenset(
            roots_of_pair
            for pair in self.separations
            if len(roots_of_pair := frozenset(self.root_of(c) for c in pair)) == 2
            and roots_of_pair <= live
        )
        return GraphFacts(links=links, roots=roots, customers=customers, separated=separated)

    def commit(self, resolution: Resolution) -> None:
        if resolution.duplicate or resolution.event_id in self.events:
            return
        for action in resolution.actions:
            match action:
                case CreateCustomer(customer_id=customer_id, created_at=created_at):
                    if customer_id in self.created:
                        raise IdentityError(f"customer {customer_id} exists")
                    self.add_customer(customer_id, created_at, ())
                case LinkIdentifier(link=link):
                    if link.identifier.key in self.links:
                        raise IdentityError("identifier is already linked")
                    self.links[link.identifier.key] = link
                    self.held[self.root_of(link.customer_id)].append(link.identifier)
                case MergeCustomers() as merge:
                    self._merge(merge)
                case QuarantineMerge():
                    pass
        if resolution.customer_id is not None:
            self.events[resolution.event_id] = resolution.customer_id

    def _merge(self, merge: MergeCustomers) -> None:
        if merge.loser_id not in self.held or self.root_of(merge.parent_id) != merge.winner_id:
            raise IdentityError(f"merge {merge.merge_id} does not match the graph")
        if merge.winner_id == merge.loser_id:
            raise IdentityError("a customer cannot be merged into itself")
        self.parents[merge.loser_id] = merge.parent_id
        self.held[merge.winner_id].extend(self.held.pop(merge.loser_id))
