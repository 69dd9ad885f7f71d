"""The identity graph's facts and the decisions resolution hands to the repository.

Links never move. A link keeps the customer it was first made for (its *home*); a merge only
points the losing customer at a customer of the winning side. A customer's identifiers are
the links of every customer that points (transitively) at it, so an unmerge is one pointer
cleared: each side gets back exactly the links made for it, including links added after the
merge through that side's identifiers.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cxm_profile.identity.identifiers import Identifier, IgnoredIdentifier
from cxm_profile.identity.rules import Trust


@dataclass(frozen=True, slots=True)
class Link:
    """An identifier belongs to a customer because of one event, under one rule, at one time."""

    identifier: Identifier
    customer_id: str  # home customer: the one this link was made for; never rewritten
    event_id: str
    rule: str
    trust: Trust
    linked_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """A live customer (the root of its merge tree) with every identifier it holds."""

    customer_id: str
    created_at: datetime
    identifiers: tuple[Identifier, ...]


@dataclass(frozen=True, slots=True)
class GraphFacts:
    """What resolving one event needs to know about the graph, read in one go."""

    previous_customer_id: str | None = None  # live customer this event_id already went to
    links: Mapping[str, Link] = field(default_factory=dict)  # identifier key -> link
    roots: Mapping[str, str] = field(default_factory=dict)  # home customer -> live customer
    customers: Mapping[str, CustomerFacts] = field(default_factory=dict)  # by live customer id
    separated: frozenset[frozenset[str]] = frozenset()  # live customer pairs never to auto-merge


@dataclass(frozen=True, slots=True)
class CreateCustomer:
    customer_id: str
    created_at: datetime
    event_id: str


@dataclass(frozen=True, slots=True)
class LinkIdentifier:
    link: Link


@dataclass(frozen=True, slots=True)
class MergeCustomers:
    """Merge `loser_id` (a live customer) into the live customer `winner_id`.

    `parent_id` is the home customer of the winner-side joining identifier: the loser hangs
    under the customer the evidence actually pointed at, so undoing an earlier merge on the
    winner's side carries this one along with the side it belongs to.
    """

    merge_id: str
    loser_id: str
    winner_id: str
    parent_id: str
    event_id: str
    rule: str
    joined_by: Identifier  # the event's identifier that was already the loser's
    joined_to: Identifier  # the event's identifier that was already the winner's
    merged_at: datetime


@dataclass(frozen=True, slots=True)
class QuarantineMerge:
    """A merge the evidence asks for but a rule forbids; kept for a person to decide."""

    quarantine_id: str
    customer_id: str  # the customer the event went to
    other_customer_id: str  # the customer it would have been merged with
    event_id: str
    reasons: tuple[str, ...]
    joined_by: Identifier  # the event's identifier that belongs to the other customer
    quarantined_at: datetime


Action = CreateCustomer | LinkIdentifier | MergeCustomers | QuarantineMerge


@dataclass(frozen=True, slots=True)
class Resolution:
    """The decision for one event; the repository applies `actions` in order, atomically.

    `customer_id` is None only when the event carried no usable identifier.
    `duplicate` is True when the event_id was resolved before: nothing is to be applied.
    """

    event_id: str
    customer_id: str | None
    actions: tuple[Action, ...] = ()
    ignored: tuple[IgnoredIdentifier, ...] = ()
    duplicate: bool = False

    @property
    def merges(self) -> tuple[MergeCustomers, ...]:
        return tuple(a for a in self.actions if isinstance(a, MergeCustomers))

    @property
    def quarantines(self) -> tuple[QuarantineMerge, ...]:
        return tuple(a for a in self.actions if isinstance(a, QuarantineMerge))

    @property
    def created(self) -> CreateCustomer | None:
        return next((a for a in self.actions if isinstance(a, CreateCustomer)), None)

    @property
    def links(self) -> tuple[Link, ...]:
        return tuple(a.link for a in self.actions if isinstance(a, LinkIdentifier))


@dataclass(frozen=True, slots=True)
class MergeRecord:
    """A merge as history keeps it; `unmerged_at` is set once it has been undone."""

    merge: MergeCustomers
    unmerged_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UnmergeCustomers:
    """Undo one merge: `loser_id` is live again and the pair is kept apart from now on."""

    merge_id: str
    loser_id: str
    parent_id: str
    unmerged_at: datetime
    reason: str
