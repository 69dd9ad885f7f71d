"""The simulator's event stream: deterministic, valid for the ingest, identifiers that join
into one customer each (and never across customers), and journeys with the shape the demo
promises (drifting customers slide, delighted ones shine, JA and EN feedback)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from cxm_ingest.auth import Source
from cxm_ingest.config import IngestSettings
from cxm_ingest.events.service import normalise
from cxm_profile.identity.identifiers import parse_identifiers
from cxm_profile.identity.rules import DEFAULT_RULES, Trust, load_rules
from cxm_sim.cli import main
from cxm_sim.journeys import WEEK, Planned, SimConfig, World, default_namespace
from cxm_sim.people import Customer, phone_number
from cxm_sim.send import MAX_BATCH_BYTES, encode_batch, split_batches
from cxm_sim.tally import Tally, nps

END = datetime(2026, 11, 1, tzinfo=UTC)
STRONG = {"user_id", "email", "phone", "loyalty_id"}
WEAK = {"device_id", "anonymous_id", "cookie_id"}
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def config(**overrides: object) -> SimConfig:
    base: dict[str, object] = dict(
        customers=300,
        weeks=6,
        seed=7,
        end=END,
        namespace=default_namespace(seed=7, customers=300, weeks=6, end=END),
    )
    base.update(overrides)
    return SimConfig(**base)  # type: ignore[arg-type]


def serialised(world: World) -> bytes:
    return b"\n".join(
        json.dumps(p.event, sort_keys=True, ensure_ascii=False).encode() for p in world.events()
    )


@pytest.fixture(scope="module")
def world() -> World:
    return World(config())


@pytest.fixture(scope="module")
def planned(world: World) -> list[Planned]:
    return list(world.events())


@pytest.fixture(scope="module")
def customers(world: World) -> dict[int, Customer]:
    return {c.index: c for c in world.population()}


def test_same_seed_gives_the_identical_event_stream() -> None:
    first = serialised(World(config(customers=120)))
    assert first == serialised(World(config(customers=120)))
    world = World(config(customers=120))
    assert serialised(world) == serialised(world)  # iterating again starts over
    assert serialised(World(config(customers=120, seed=8))) != first


def test_runs_with_different_namespaces_share_no_identifier_or_event_id() -> None:
    a = list(World(config(customers=80, namespace="runa")).events())
    b = list(World(config(customers=80, namespace="runb")).events())

    def values(events: list[Planned]) -> set[str]:
        return {v for p in events for v in p.event["identifiers"].values()}

    assert not values(a) & values(b)
    assert not {p.event["event_id"] for p in a} & {p.event["event_id"] for p in b}


def test_every_event_is_accepted_by_the_ingest_validation(
    planned: list[Planned], world: World
) -> None:
    """The ingest's own normalisation (envelope, per-type properties, bounds, time range)."""
    source = Source("dev", "web")
    received = world.config.end + timedelta(minutes=1)
    settings = IngestSettings()
    for p in planned:
        touchpoint, _ = normalise(
            p.event,
            source=source,
            received_at=received,
            max_future=timedelta(seconds=settings.max_future_seconds),
        )
        assert touchpoint["channel"] == p.event["channel"]
        assert len(json.dumps(p.event).encode()) < settings.max_event_bytes
    for batch in split_batches([p.event for p in planned], size=500):
        assert len(batch) <= settings.max_batch_events
        assert len(encode_batch(batch)) <= min(MAX_BATCH_BYTES, settings.max_batch_bytes)


def test_every_identifier_is_accepted_by_the_profile_rules(planned: list[Planned]) -> None:
    """No identifier is silently dropped: valid emails and phone numbers, no placeholders."""
    rules = load_rules(DEFAULT_RULES)
    for p in planned:
        parsed = parse_identifiers(p.event["identifiers"], rules=rules, secret=b"test")
        assert not parsed.ignored, (p.event["event_id"], parsed.ignored)


def test_phone_numbers_are_valid_and_distinct_for_every_index() -> None:
    """Across namespaces and far more customers than a small world has: every number is one
    libphonenumber accepts, none repeats within a namespace."""
    rules = load_rules(DEFAULT_RULES)
    for namespace in ("demo", "chaos-a", "chaos-b"):
        numbers = [phone_number(namespace, i) for i in range(3000)]
        assert len(set(numbers)) == len(numbers)
        for number in numbers:
            parsed = parse_identifiers({"phone": number}, rules=rules, secret=b"test")
            assert not parsed.ignored, (number, parsed.ignored)


def test_identifiers_overlap_into_exactly_one_customer_each(
    planned: list[Planned], customers: dict[int, Customer]
) -> None:
    """Union the identifiers seen together in a trusted event: each registered customer's
    identifiers form one group holding all of them, no group spans two customers, and a weak
    identifier only ever appears next to its own customer's strong ones (so the resolved
    customer does not depend on processing order, by the profile service's rules)."""
    rules = load_rules(DEFAULT_RULES)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    owner: dict[str, int] = {}
    for p in planned:
        ids = [f"{t}:{v}" for t, v in p.event["identifiers"].items()]
        for key in ids:
            assert owner.setdefault(key, p.customer) == p.customer, "identifier shared"
            find(key)
        trust = rules.trust_of(channel=p.event["channel"], touchpoint=p.event["touchpoint"])
        if trust is Trust.LOW:
            assert len(ids) == 1, "a low-trust event never carries joining evidence"
            continue
        for key in ids[1:]:
            parent[find(key)] = find(ids[0])

    groups: dict[str, set[int]] = defaultdict(set)
    for key, customer in owner.items():
        groups[find(key)].add(customer)
    assert all(len(members) == 1 for members in groups.values())
    for c in customers.values():
        used = {k for k, owner_ in owner.items() if owner_ == c.index}
        if not used:
            continue
        if c.registered:
            assert len({find(k) for k in used}) == 1, f"customer {c.index} split"
            expected = {f"{t}:{v}" for t, v in c.identifiers().items()}
            expected |= {f"device_id:{d}" for d in c.devices}
            expected |= {f"anonymous_id:{b}" for b in c.browsers}
            assert used == expected
        else:
            assert {k.split(":", 1)[0] for k in used} <= WEAK  # browsers stay anonymous


def test_customers_carry_several_identifiers_and_devices(
    planned: list[Planned], customers: dict[int, Customer]
) -> None:
    types: dict[int, set[str]] = defaultdict(set)
    devices: dict[int, set[str]] = defaultdict(set)
    for p in planned:
        types[p.customer] |= set(p.event["identifiers"])
        if "device_id" in p.event["identifiers"]:
            devices[p.customer].add(p.event["identifiers"]["device_id"])
    registered = [c.index for c in customers.values() if c.registered]
    every_type = {"anonymous_id", "device_id", "user_id", "email", "phone", "loyalty_id"}
    assert sum(types[i] == every_type for i in registered) > 0.1 * len(registered)
    assert all(len(types[i]) >= 3 for i in registered)
    assert sum(len(devices[i]) >= 2 for i in registered) > 0.1 * len(registered)


def test_journeys_cross_every_channel_in_both_languages(planned: list[Planned]) -> None:
    channels = Counter(p.event["channel"] for p in planned)
    assert set(channels) >= {
        "web",
        "app",
        "store",
        "call_center",
        "chat",
        "delivery",
        "email",
        "review_site",
    }
    comments = [
        (p.event["context"]["locale"], p.event["properties"]["comment"])
        for p in planned
        if "comment" in p.event["properties"]
    ]
    ja = [text for locale, text in comments if locale.startswith("ja")]
    en = [text for locale, text in comments if locale.startswith("en")]
    assert len(ja) > 50 and len(en) > 20
    assert all(JAPANESE.search(text) for text in ja)
    assert not any(JAPANESE.search(text) for text in en)


def test_events_fall_inside_the_period_in_time_order_week_by_week(world: World) -> None:
    start, end = world.config.start, world.config.end
    for week, events in enumerate(world.weeks()):
        times = [datetime.fromisoformat(p.event["occurred_at"]) for p in events]
        assert times == sorted(times)
        assert all(t < min(end, start + (week + 1) * WEEK) for t in times)
        assert all(t.utcoffset() == timedelta(hours=9) for t in times)  # JST, with offset


def test_drifting_customers_slide_towards_churn_and_delighted_ones_stay_happy(
    planned: list[Planned], customers: dict[int, Customer]
) -> None:
    start = config().start

    def week_of(p: Planned) -> int:
        return int((datetime.fromisoformat(p.event["occurred_at"]) - start) / WEEK)

    by_customer: dict[int, list[Planned]] = defaultdict(list)
    for p in planned:
        by_customer[p.customer].append(p)

    drifting = [c for c in customers.values() if c.persona == "drifting"]
    delighted = [c for c in customers.values() if c.persona == "delighted"]
    assert len(drifting) > 30 and len(delighted) > 30

    purchases_before = purchases_after = weeks_before = weeks_after = 0
    nps_after: list[int] = []
    repeated = 0
    for c in drifting:
        assert c.drift_week is not None
        events = by_customer[c.index]
        weeks_before += c.drift_week - c.signup_week
        weeks_after += 6 - c.drift_week
        for p in events:
            after = week_of(p) >= c.drift_week
            props = p.event["properties"]
            if p.event["type"] == "purchase" and week_of(p) >= c.signup_week:
                purchases_before += not after
                purchases_after += after
            if after and p.event["type"] == "survey_response" and "nps" in props:
                nps_after.append(props["nps"])
        reasons = Counter(
            p.event["properties"]["reason"] for p in events if p.event["type"] == "support_contact"
        )
        repeated += reasons.get(c.problem or "", 0) >= 3
    assert purchases_after / weeks_after < 0.5 * purchases_before / weeks_before
    # Detractors (a survey about an order placed before the slide may still be kind).
    assert sum(s <= 6 for s in nps_after) > 0.9 * len(nps_after) > 20
    assert repeated > 0.5 * len(drifting)  # calling again and again about the same problem

    # Parcels of orders placed after the slide fail far more often than anyone else's.
    slid_orders = {
        p.event["properties"]["order_id"]
        for p in planned
        if p.event["type"] == "purchase"
        and customers[p.customer].drift_week is not None
        and week_of(p) >= (customers[p.customer].drift_week or 0)
    }
    shipped: Counter[bool] = Counter()
    failed: Counter[bool] = Counter()
    for p in planned:
        status = p.event["properties"].get("status")
        if p.event["type"] == "delivery" and status in ("shipped", "failed"):
            slid = p.event["properties"]["order_id"] in slid_orders
            (shipped if status == "shipped" else failed)[slid] += 1
    assert failed[True] / shipped[True] > 3 * failed[False] / shipped[False]

    delighted_nps = [
        p.event["properties"]["nps"]
        for c in delighted
        for p in by_customer[c.index]
        if p.event["type"] == "survey_response" and "nps" in p.event["properties"]
    ]
    # Promoters, but for the odd failed parcel.
    assert sum(s >= 9 for s in delighted_nps) > 0.75 * len(delighted_nps) > 20


def test_tally_counts_nps_per_channel_as_defined() -> None:
    assert nps([10, 9, 8, 7, 6, 0]) == pytest.approx(0.0)
    assert nps([10, 10, 10, 3]) == 50.0
    assert nps([]) is None
    tally = Tally()
    tally.add(
        Planned(
            1,
            "steady",
            {
                "event_id": "x",
                "type": "survey_response",
                "channel": "store",
                "properties": {"csat": 4},
                "context": {"locale": "ja-JP"},
            },
        )
    )
    assert tally.responses_by_channel["store"] == 1 and tally.nps_table() == {}


def test_split_batches_halves_a_batch_over_the_byte_cap() -> None:
    big = [{"event_id": str(i), "properties": {"comment": "x" * 9000}} for i in range(100)]
    batches = split_batches(big, size=100)
    assert [e for b in batches for e in b] == big
    assert all(len(encode_batch(b)) <= MAX_BATCH_BYTES for b in batches)
    assert len(batches) > 1


def test_cli_dump_writes_the_stream_and_refuses_a_future_end(tmp_path, capsys) -> None:
    out = tmp_path / "events.jsonl"
    args = ["--customers", "20", "--weeks", "2", "--seed", "3", "--end", "2026-10-01"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--dump", str(out)])
    assert done.value.code == 0
    lines = out.read_text().splitlines()
    ns = default_namespace(seed=3, customers=20, weeks=2, end=datetime(2026, 10, 1, tzinfo=UTC))
    assert lines and all(json.loads(line)["event_id"].startswith(f"sim-{ns}-") for line in lines)
    future = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    with pytest.raises(SystemExit) as refused:
        main(["--end", future, "--dump", str(out)])
    assert refused.value.code == 2
    assert "future" in capsys.readouterr().err
