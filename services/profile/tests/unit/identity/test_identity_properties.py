"""Properties of resolution over random event sequences (see the guarantees in resolution.py)."""

from __future__ import annotations

import copy
from collections import Counter
from typing import TYPE_CHECKING, Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cxm_profile.identity.rules import DEFAULT_RULES, ResolutionRules, load_rules
from cxm_profile.identity.unmerge import plan_unmerge

if TYPE_CHECKING:
    from conftest import IdentityWorld

Event = dict[str, str]

STRONG_VALUES = {
    "email": ["a@example.org", "b@example.org", "c@example.org", "d@example.org"],
    "loyalty_id": ["L-0", "L-1", "L-2"],
}
WEAK_VALUES = {"device_id": ["d-0", "d-1", "d-2", "d-3"], "anonymous_id": ["a-0", "a-1", "a-2"]}
USER_IDS = ["u-0", "u-1", "u-2"]
CHANNELS = ["web", "app", "store", "call_center"]


def _unlimited_rules() -> ResolutionRules:
    """The order-independence guarantee is for rules without unique types or limits."""
    config = copy.deepcopy(dict(DEFAULT_RULES))
    for rule in config["types"].values():
        rule.pop("unique", None)
        rule.pop("max_per_customer", None)
    config["channel_trust"] = {}
    return load_rules(config)


def _tight_rules() -> ResolutionRules:
    config = copy.deepcopy(dict(DEFAULT_RULES))
    config["types"]["device_id"]["max_per_customer"] = 2
    config["types"]["email"]["max_per_customer"] = 2
    return load_rules(config)


def _events(pools: dict[str, list[str]]) -> st.SearchStrategy[list[Event]]:
    one_event = st.dictionaries(
        st.sampled_from(sorted(pools)), st.none(), min_size=1, max_size=3
    ).flatmap(
        lambda chosen: st.fixed_dictionaries(
            {identifier_type: st.sampled_from(pools[identifier_type]) for identifier_type in chosen}
        )
    )
    return st.lists(one_event, min_size=1, max_size=12)


def _play(world: IdentityWorld, events: list[Event], channels: list[str] | None = None) -> None:
    for n, event in enumerate(events):
        channel = channels[n % len(channels)] if channels else "app"
        world.send_now(f"event-{_event_key(event)}", channel, event)


def _event_key(event: Event) -> str:
    # The event id follows the content, so a permuted list keeps each event's identity.
    return "|".join(f"{t}={v}" for t, v in sorted(event.items()))


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, items: list[str]) -> None:
        for item in items:
            self.parent[self.find(item)] = self.find(items[0])


def _expected_partition(
    world: IdentityWorld, events: list[Event]
) -> tuple[frozenset[frozenset[str]], set[str]]:
    """Reference: strong ids seen together join; a weak component that touches exactly one
    strong component joins it, one touching none stands alone, others are contested."""
    rules = world.rules
    strong, weak = _UnionFind(), _UnionFind()
    keyed = [[(t, world.key(t, v)) for t, v in event.items()] for event in events]
    for identifiers in keyed:
        strong.union([k for t, k in identifiers if rules.is_strong(t)] or [])
        weak.union([k for t, k in identifiers if not rules.is_strong(t)] or [])
    touched: dict[str, set[str]] = {}
    for identifiers in keyed:
        strong_roots = {strong.find(k) for t, k in identifiers if rules.is_strong(t)}
        for t, k in identifiers:
            if not rules.is_strong(t):
                touched.setdefault(weak.find(k), set()).update(strong_roots)
    clusters: dict[str, set[str]] = {}
    decided: set[str] = set()
    for key in strong.parent:
        clusters.setdefault(strong.find(key), set()).add(key)
        decided.add(key)
    for key in weak.parent:
        owners = touched[weak.find(key)]
        if len(owners) <= 1:
            home = next(iter(owners)) if owners else f"weak:{weak.find(key)}"
            clusters.setdefault(home, set()).add(key)
            decided.add(key)
    return frozenset(frozenset(c) for c in clusters.values()), decided


def _restricted(clusters: frozenset[frozenset[str]], keys: set[str]) -> frozenset[frozenset[str]]:
    return frozenset(c & keys for c in clusters if c & keys)


@given(
    events=_events({**STRONG_VALUES, **WEAK_VALUES}),
    order=st.randoms(use_true_random=False),
)
@settings(max_examples=200, deadline=None)
def test_any_order_gives_the_same_customers(
    new_world: type[IdentityWorld], events: list[Event], order: Any
) -> None:
    shuffled = list(events)
    order.shuffle(shuffled)
    first, second = new_world(_unlimited_rules()), new_world(_unlimited_rules())
    _play(first, events)
    _play(second, shuffled)
    expected, decided = _expected_partition(first, events)
    assert _restricted(first.repository.clusters(), decided) == expected
    assert _restricted(second.repository.clusters(), decided) == expected


@given(
    events=_events({**STRONG_VALUES, **WEAK_VALUES, "user_id": USER_IDS}),
    channels=st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=4),
)
@settings(max_examples=150, deadline=None)
def test_invariants_hold_for_any_sequence(
    new_world: type[IdentityWorld], events: list[Event], channels: list[str]
) -> None:
    world = new_world(_tight_rules())
    linked: set[str] = set()
    for n, event in enumerate(events):
        world.send_now(f"event-{n}", channels[n % len(channels)], event)
        now_linked = set(world.repository.links)
        assert linked <= now_linked  # no identifier is ever lost
        linked = now_linked
        held = world.repository.identifiers_by_customer()
        assert sum(len(ids) for ids in held.values()) == len(now_linked)  # one customer each
        for identifiers in held.values():
            for identifier_type, n_held in Counter(i.type for i in identifiers).items():
                limit = world.rules.limit(identifier_type)
                assert limit is None or n_held <= limit
    before = (
        world.repository.clusters(),
        len(world.repository.merges),
        len(world.repository.quarantines),
    )
    for n, event in enumerate(events):
        again = world.send_now(f"event-{n}", channels[n % len(channels)], event)
        assert again.duplicate
    after = (
        world.repository.clusters(),
        len(world.repository.merges),
        len(world.repository.quarantines),
    )
    assert after == before


@given(events=_events({**STRONG_VALUES, **WEAK_VALUES, "user_id": USER_IDS}))
@settings(max_examples=150, deadline=None)
def test_unmerge_restores_the_customers_as_they_were(
    new_world: type[IdentityWorld], events: list[Event]
) -> None:
    world = new_world(_tight_rules())
    for n, event in enumerate(events):
        before = world.repository.clusters()
        old_keys = set(world.repository.links)
        resolution = world.send_now(f"event-{n}", "app", event)
        for merge in reversed(resolution.merges):
            record = world.repository.merges[merge.merge_id]
            world.repository.commit_unmerge(
                plan_unmerge(merge_id=merge.merge_id, record=record, now=world.now(), reason="t")
            )
        if resolution.merges:
            assert _restricted(world.repository.clusters(), old_keys) == before
