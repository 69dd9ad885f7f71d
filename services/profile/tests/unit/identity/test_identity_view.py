"""The batch view decides exactly as the reference in-memory graph does.

The PostgreSQL adapter loads what a batch can reach into a `GraphView` and decides the whole
batch against it. Here the same load is made from the in-memory reference (after a history
that may include unmerges), then a batch is decided both ways, event by event: every
resolution must be the same.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cxm_profile.identity.identifiers import parse_identifiers
from cxm_profile.identity.models import Resolution, UnmergeCustomers
from cxm_profile.identity.repository import InMemoryIdentityRepository
from cxm_profile.identity.resolution import IdentityEvent, decide
from cxm_profile.identity.rules import DEFAULT_RULES, ResolutionRules, load_rules
from cxm_profile.identity.view import GraphView

SECRET = b"view-tests"
START = datetime(2026, 1, 1, tzinfo=UTC)
POOLS = {
    "email": ["a@example.org", "b@example.org", "c@example.org"],
    "user_id": ["u-0", "u-1"],
    "device_id": ["d-0", "d-1", "d-2"],
    "anonymous_id": ["x-0", "x-1"],
}
CHANNELS = ["web", "app", "store", "call_center"]


def _rules() -> ResolutionRules:
    config = copy.deepcopy(dict(DEFAULT_RULES))
    config["types"]["device_id"]["max_per_customer"] = 2
    return load_rules(config)


RULES = _rules()

one_event = st.tuples(
    st.dictionaries(st.sampled_from(sorted(POOLS)), st.none(), min_size=1, max_size=3).flatmap(
        lambda chosen: st.fixed_dictionaries({t: st.sampled_from(POOLS[t]) for t in chosen})
    ),
    st.sampled_from(CHANNELS),
    st.integers(0, 5),  # event id: small, so some events are redelivered
)
Event = tuple[dict[str, str], str, int]


def _event(event: Event) -> IdentityEvent:
    identifiers, channel, n = event
    parsed = parse_identifiers(identifiers, rules=RULES, secret=SECRET)
    return IdentityEvent(f"{sorted(identifiers.items())}-{n}", channel, None, parsed)


def _decide_on(repository: InMemoryIdentityRepository, event: IdentityEvent, at: datetime):
    facts = repository.facts_for(
        event_id=event.event_id, keys=[i.key for i in event.identifiers.accepted]
    )
    resolution = decide(event, facts=facts, rules=RULES, now=at)
    repository.commit(resolution)
    return resolution


def _view_of(repository: InMemoryIdentityRepository, events: list[IdentityEvent]) -> GraphView:
    """What `postgres.load_view` reads, read from the reference graph."""
    view = GraphView()
    for event in events:
        if (customer_id := repository.events.get(event.event_id)) is not None:
            view.add_event(event.event_id, customer_id)
            view.add_member(customer_id, repository.root_of(customer_id))
    keys = {i.key for event in events for i in event.identifiers.accepted}
    links = [link for key, link in repository.links.items() if key in keys]
    live = {repository.root_of(link.customer_id) for link in links}
    members = {c for c in repository.customers if repository.root_of(c) in live}
    held = repository.identifiers_by_customer()
    for link in links:
        view.add_link(link)
    for customer_id in members:
        view.add_member(customer_id, repository.root_of(customer_id))
    for root in live:
        view.add_customer(root, repository.customers[root].created_at, held[root])
    for pair in repository.separations:
        if pair <= members:
            view.add_separation(*sorted(pair))
    return view


@given(
    history=st.lists(one_event, max_size=10),
    unmerges=st.lists(st.integers(0, 20), max_size=2),
    batch=st.lists(one_event, min_size=1, max_size=10),
)
@settings(max_examples=300, deadline=None)
def test_a_batch_decided_on_the_view_matches_the_reference(
    history: list[Event], unmerges: list[int], batch: list[Event]
) -> None:
    reference = InMemoryIdentityRepository()
    at = START
    for event in history:
        at += timedelta(seconds=1)
        _decide_on(reference, _event(event), at)
    for n in unmerges:
        active = reference.active_merges()
        if active:
            merge = active[n % len(active)]
            reference.commit_unmerge(
                UnmergeCustomers(merge.merge_id, merge.loser_id, merge.parent_id, at, "test")
            )

    events = [_event(event) for event in batch]
    view = _view_of(reference, events)
    for event in events:
        at += timedelta(seconds=1)
        expected: Resolution = _decide_on(reference, event, at)
        facts = view.facts_for(
            event_id=event.event_id, keys=[i.key for i in event.identifiers.accepted]
        )
        got = decide(event, facts=facts, rules=RULES, now=at)
        view.commit(got)
        assert got == expected
