"""Aggregation group keys and deterministic alert ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cxm_alerting.routing.alert_ids import alert_id, window_start
from cxm_alerting.routing.groups import group_id, group_key, group_labels
from cxm_alerting.routing.match import match
from cxm_alerting.routing.tree import RoutingTree, build_tree


@pytest.fixture(scope="module")
def tree() -> RoutingTree:
    return build_tree(
        {
            "route": {
                "receiver": "ops",
                "group_by": ["kind", "customer_id"],
                "routes": [
                    {"receiver": "a", "matchers": ['kind="churn_risk_high"'], "continue": True},
                    {"receiver": "b", "matchers": ['kind="churn_risk_high"'], "group_by": []},
                    {"receiver": "c", "matchers": ['kind="detractor"'], "group_by": ["..."]},
                    {"receiver": "d", "matchers": ['kind="detractor"']},
                ],
            },
            "receivers": [{"name": n} for n in ["ops", "a", "b", "c", "d"]],
        }
    )


def test_one_group_per_route_and_group_label_values(tree: RoutingTree) -> None:
    first = {"kind": "churn_risk_high", "customer_id": "c1", "channel": "web"}
    same_customer = {"kind": "churn_risk_high", "customer_id": "c1", "channel": "app"}
    other_customer = {"kind": "churn_risk_high", "customer_id": "c2", "channel": "web"}
    route_a, route_b = (m.route for m in match(tree, first))

    key = group_key(route=route_a, labels=first)

    assert key == '{}/{kind="churn_risk_high"}:{customer_id="c1",kind="churn_risk_high"}'
    assert group_key(route=route_a, labels=same_customer) == key
    assert group_key(route=route_a, labels=other_customer) != key
    # Same labels on another route (reached through continue) are another group.
    assert group_key(route=route_b, labels=first) != key
    # group_by: [] puts every alert of the route in one group.
    assert group_key(route=route_b, labels=first) == group_key(route=route_b, labels=other_customer)


def test_group_by_all_uses_every_label(tree: RoutingTree) -> None:
    labels = {"kind": "detractor", "customer_id": "c1", "channel": "web"}
    (found,) = match(tree, labels)

    assert group_labels(route=found.route, labels=labels) == labels
    assert group_key(route=found.route, labels={**labels, "channel": "app"}) != group_key(
        route=found.route, labels=labels
    )


def test_siblings_with_identical_matchers_get_distinct_keys(tree: RoutingTree) -> None:
    c, d = tree.root.routes[2], tree.root.routes[3]

    assert c.key != d.key
    assert d.key.endswith("#3")


def test_missing_and_empty_group_labels_fall_into_one_group(tree: RoutingTree) -> None:
    route = tree.root

    assert group_key(route=route, labels={"kind": "x"}) == group_key(
        route=route, labels={"kind": "x", "customer_id": ""}
    )


def test_group_id_is_short_opaque_and_stable(tree: RoutingTree) -> None:
    labels = {"kind": "churn_risk_high", "customer_id": "c1"}
    route = tree.root.routes[0]

    gid = group_id(route=route, labels=labels)

    assert len(gid) == 16 and "c1" not in gid
    assert gid == group_id(route=route, labels=dict(labels))
    assert gid != group_id(route=route, labels={**labels, "customer_id": "c2"})


def test_window_start_floors_to_the_window() -> None:
    at = datetime(2025, 3, 4, 10, 47, 12, tzinfo=UTC)

    assert window_start(at=at, window=timedelta(hours=1)) == datetime(2025, 3, 4, 10, tzinfo=UTC)
    assert window_start(at=at, window=timedelta(minutes=15)) == datetime(
        2025, 3, 4, 10, 45, tzinfo=UTC
    )
    assert window_start(at=at, window=timedelta(days=1)) == datetime(2025, 3, 4, tzinfo=UTC)


def test_window_start_is_the_same_instant_whatever_the_timezone() -> None:
    tokyo = timezone(timedelta(hours=9))
    at_utc = datetime(2025, 3, 4, 10, 47, tzinfo=UTC)

    assert window_start(at=at_utc.astimezone(tokyo), window=timedelta(hours=1)) == window_start(
        at=at_utc, window=timedelta(hours=1)
    )


def test_window_start_rejects_naive_times_and_bad_windows() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        window_start(at=datetime(2025, 1, 1), window=timedelta(hours=1))
    with pytest.raises(ValueError, match="positive"):
        window_start(at=datetime(2025, 1, 1, tzinfo=UTC), window=timedelta(0))


def test_alert_id_is_one_per_kind_customer_and_window() -> None:
    window = timedelta(hours=1)
    t1 = datetime(2025, 3, 4, 10, 5, tzinfo=UTC)
    t2 = datetime(2025, 3, 4, 10, 55, tzinfo=UTC)
    t3 = datetime(2025, 3, 4, 11, 5, tzinfo=UTC)

    def aid(kind: str, customer: str, at: datetime) -> str:
        return alert_id(
            kind=kind, customer_id=customer, window_start=window_start(at=at, window=window)
        )

    first = aid("churn_risk_high", "c1", t1)
    assert uuid.UUID(first).version == 5
    assert aid("churn_risk_high", "c1", t2) == first
    assert aid("churn_risk_high", "c1", t3) != first
    assert aid("churn_risk_high", "c2", t1) != first
    assert aid("detractor", "c1", t1) != first


def test_alert_id_does_not_depend_on_the_timezone_of_the_window_start() -> None:
    start = datetime(2025, 3, 4, 10, tzinfo=UTC)
    in_tokyo = start.astimezone(timezone(timedelta(hours=9)))

    assert alert_id(kind="k", customer_id="c", window_start=start) == alert_id(
        kind="k", customer_id="c", window_start=in_tokyo
    )
