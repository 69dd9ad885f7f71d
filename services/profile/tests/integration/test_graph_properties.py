"""Properties of the PostgreSQL identity graph over random event sequences (hypothesis).

Each example plays the same events twice into one database under two fresh identifier
namespaces: once in order, once shuffled with redeliveries in random batch sizes (the agent's
batch path), then all of them again. Both graphs must hold the same customers, the replay
must change nothing, every identifier must be linked and belong to exactly one live customer.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cxm_profile.identity.identifiers import parse_identifiers
from cxm_profile.identity.rules import DEFAULT_RULES, ResolutionRules, load_rules
from cxm_profile.stream.service import resolve_batch
from cxm_shared.events import Touchpoint

pytestmark = pytest.mark.integration

SECRET = b"graph-properties"
AT = datetime(2026, 3, 1, tzinfo=UTC)
POOLS = {
    "email": ["a", "b", "c"],
    "loyalty_id": ["L0", "L1"],
    "device_id": ["d0", "d1", "d2"],
    "anonymous_id": ["x0", "x1"],
}


def _rules() -> ResolutionRules:
    """Order independence is promised for rules without unique types or per-type limits."""
    config = copy.deepcopy(dict(DEFAULT_RULES))
    for rule in config["types"].values():
        rule.pop("unique", None)
        rule.pop("max_per_customer", None)
    config["channel_trust"] = {}
    return load_rules(config)


RULES = _rules()
Event = dict[str, str]

one_event = st.dictionaries(st.sampled_from(sorted(POOLS)), st.none(), min_size=1, max_size=3)
events_strategy = st.lists(
    one_event.flatmap(lambda c: st.fixed_dictionaries({t: st.sampled_from(POOLS[t]) for t in c})),
    min_size=1,
    max_size=10,
)


def _expected(events: list[Event]) -> tuple[list[frozenset[str]], set[str]]:
    """The reference partition (as in the unit properties): strong identifiers seen together
    join; a weak component touching exactly one strong component joins it, one touching none
    stands alone; a weak identifier touching two strong components is contested (where it
    lands may depend on order) and is left out of the comparison."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    def union(items: list[str]) -> None:
        for item in items:
            parent[find(item)] = find(items[0])

    strong = {t for t in POOLS if RULES.is_strong(t)}
    named = [[f"{t}={v}" for t, v in e.items()] for e in events]
    for event in named:
        union([n for n in event if n.split("=")[0] in strong])
        union([n for n in event if n.split("=")[0] not in strong])
    touched: dict[str, set[str]] = {}
    for event in named:
        owners = {find(n) for n in event if n.split("=")[0] in strong}
        for n in event:
            if n.split("=")[0] not in strong:
                touched.setdefault(find(n), set()).update(owners)
    clusters: dict[str, set[str]] = {}
    for n in list(parent):
        if n.split("=")[0] in strong:
            clusters.setdefault(find(n), set()).add(n)
        elif len(owners := touched[find(n)]) <= 1:
            clusters.setdefault(next(iter(owners)) if owners else find(n), set()).add(n)
    decided = {n for c in clusters.values() for n in c}
    return sorted((frozenset(c) for c in clusters.values()), key=sorted), decided


def _only(clusters: list[frozenset[str]], names: set[str]) -> list[frozenset[str]]:
    return sorted((c & names for c in clusters if c & names), key=sorted)


def _value(type_: str, value: str, run: str) -> str:
    return f"{value}.{run}@example.org" if type_ == "email" else f"{value}-{run}"


def _touchpoint(event: Event, run: str) -> Touchpoint:
    name = "|".join(f"{t}={v}" for t, v in sorted(event.items()))  # same content, same id
    return Touchpoint(
        event_id=f"{run}:{name}",
        type="page_view",
        channel="app",
        occurred_at=AT,
        received_at=AT,
        source="property",
        identifiers={t: _value(t, v, run) for t, v in event.items()},
    )


def _names(events: list[Event], run: str) -> dict[str, str]:
    """identifier key (HMAC) -> "type=value" without the namespace."""
    names = {}
    for event in events:
        for t, v in event.items():
            (parsed,) = parse_identifiers(
                {t: _value(t, v, run)}, rules=RULES, secret=SECRET
            ).accepted
            names[parsed.key] = f"{t}={v}"
    return names


async def _clusters(engine: AsyncEngine, names: dict[str, str]) -> list[frozenset[str]]:
    """Live customers holding this namespace's identifiers, as sets of identifier names."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                """
                WITH RECURSIVE up(start, cur, parent) AS (
                    SELECT customer_id, customer_id, parent_id FROM profile.customers
                    WHERE customer_id IN (SELECT customer_id FROM profile.links
                                          WHERE identifier_key = ANY(CAST(:k AS text[])))
                    UNION ALL
                    SELECT up.start, c.customer_id, c.parent_id
                    FROM up JOIN profile.customers c ON c.customer_id = up.parent)
                SELECT up.cur AS root, l.identifier_key FROM up
                JOIN profile.links l ON l.customer_id = up.start
                WHERE up.parent IS NULL AND l.identifier_key = ANY(CAST(:k AS text[]))
                """
            ),
            {"k": list(names)},
        )
        grouped: dict[str, set[str]] = {}
        for root, key in rows:
            grouped.setdefault(root, set()).add(names[key])
    return sorted((frozenset(c) for c in grouped.values()), key=sorted)


async def _timeline(engine: AsyncEngine, run: str) -> int:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text("SELECT count(*) FROM profile.timeline WHERE event_id LIKE :r"),
                {"r": f"{run}:%"},
            )
        ).scalar_one()


async def _play(engine: AsyncEngine, touchpoints: list[Touchpoint], sizes: list[int]) -> None:
    i = 0
    for size in sizes * len(touchpoints):
        if i >= len(touchpoints):
            return
        await resolve_batch(
            engine=engine, touchpoints=touchpoints[i : i + size], rules=RULES, secret=SECRET
        )
        i += size


@given(
    events=events_strategy,
    data=st.data(),
)
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_any_order_and_redelivery_give_the_same_customers_in_postgres(
    graph_engine: AsyncEngine, events: list[Event], data: st.DataObject
) -> None:
    first, second = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    await _play(graph_engine, [_touchpoint(e, first) for e in events], [1])

    shuffled = data.draw(st.permutations(events), label="order")
    again = data.draw(st.lists(st.sampled_from(events), max_size=4), label="redelivered")
    sizes = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=4), label="batch sizes")
    replay = [_touchpoint(e, second) for e in [*shuffled, *again]]
    await _play(graph_engine, replay, sizes)

    names_first, names_second = _names(events, first), _names(events, second)
    in_order = await _clusters(graph_engine, names_first)
    reordered = await _clusters(graph_engine, names_second)
    expected, decided = _expected(events)
    assert _only(in_order, decided) == expected
    assert _only(reordered, decided) == expected
    # No identifier lost, none held by two live customers.
    held = [name for cluster in reordered for name in cluster]
    assert sorted(held) == sorted(set(names_second.values()))

    # Redelivering everything once more changes nothing.
    timeline = await _timeline(graph_engine, second)
    assert timeline == len({tp.event_id for tp in replay})
    await _play(graph_engine, replay, [len(replay)])
    assert await _clusters(graph_engine, names_second) == reordered
    assert await _timeline(graph_engine, second) == timeline
