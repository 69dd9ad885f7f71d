"""The chaos checker against a fake platform (profile and alerting APIs served in process):
it finds every kind of loss, double count and phantom it promises to, with the event ids as
evidence, and reports 0 / 0 / 0 for a platform that kept everything once."""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import parse_qs

import httpx

from cxm_chaos.check import check
from cxm_chaos.killer import INFRA_TARGETS, plan_kills
from cxm_chaos.load import Ledger, Sent, invalid_copy
from cxm_chaos.services import SERVICES


def ledger() -> Ledger:
    """Two customers: 0 with a detractor survey (e3), 1 with plain events; r1 was rejected."""
    led = Ledger()
    rows = [
        ("e1", 0, "page_view", None),
        ("e2", 0, "purchase", None),
        ("e3", 0, "survey_response", (3, 4, 2)),  # NPS 3: a detractor alert is due
        ("f1", 1, "page_view", None),
        ("f2", 1, "survey_response", (10, 5, 1)),  # a promoter: no alert due
        ("r1", 0, "survey_response", (11, None, None)),
    ]
    for event_id, customer, type_, survey in rows:
        led.events[event_id] = Sent(customer, type_, survey)
        led.status[event_id] = "rejected" if event_id == "r1" else "accepted"
    led.status["e2"] = "duplicate"  # a retry after a lost answer: acknowledged too
    led.identifiers = {0: {("email", "a@example.jp")}, 1: {("email", "b@example.jp")}}
    return led


class FakePlatform:
    def __init__(self) -> None:
        self.timelines = {"cust-a": ["e3", "e2", "e1"], "cust-b": ["f2", "f1"]}
        self.applied = {"cust-a": 3, "cust-b": 2}
        self.alerts = [
            {
                "alert_id": "al-1",
                "kind": "detractor",
                "customer": {"customer_id": "cust-a"},
                "evidence": [{"signal_id": "s1", "kind": "detractor", "event_ids": ["e3"]}],
            }
        ]

    def handler(self, request: httpx.Request) -> httpx.Response:
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        path = request.url.path
        if path == "/v1/profiles/lookup":
            cid = {"a@example.jp": "cust-a", "b@example.jp": "cust-b"}[query["value"]]
            body = {"customer_id": cid, "scores": {"events_applied": self.applied[cid]}}
            return httpx.Response(200, json=body)
        if path.endswith("/timeline"):
            cid = path.split("/")[3]
            items = [{"event_id": e} for e in self.timelines[cid]]
            return httpx.Response(200, json={"items": items, "next_cursor": None})
        if path == "/v1/alerts":
            return httpx.Response(200, json=[a for a in self.alerts if a["kind"] == query["kind"]])
        return httpx.Response(404)

    async def check(self, led: Ledger) -> dict[str, Any]:
        findings = await check(
            ledger=led,
            profile_url="http://profile",
            alerting_url="http://alerting",
            token="t",
            database_url="unused",
            transport=httpx.MockTransport(self.handler),
        )
        return findings.as_dict()


async def test_a_platform_that_kept_everything_once_is_0_0_0() -> None:
    result = await FakePlatform().check(ledger())
    assert (result["lost"], result["double_applied"], result["phantom"]) == (0, 0, 0), result
    assert result["counts"]["acknowledged"] == 5 and result["counts"]["rejected"] == 1


async def test_each_loss_double_count_and_phantom_is_found_with_its_event_id() -> None:
    platform = FakePlatform()
    platform.timelines["cust-a"] = ["e3", "e2", "r1"]  # e1 lost, rejected r1 shows up
    platform.timelines["cust-b"] = ["f2", "f1", "f1"]  # f1 twice
    platform.applied["cust-b"] = 4  # one more than the timeline holds
    platform.alerts[0]["evidence"] = [
        {"signal_id": "s9", "kind": "detractor", "event_ids": ["never-sent"]}
    ]  # e3's alert missing, one for an event nobody sent
    result = await platform.check(ledger())
    places = result["by_place"]

    def ids(kind: str, place: str) -> list[Any]:
        return [x.get("event_id") for x in places[kind][place]["sample"]]

    assert ids("lost", "timeline") == ["e1"]
    assert ids("phantom", "timeline") == ["r1"]
    assert places["phantom"]["timeline"]["sample"][0]["why"] == "rejected"
    assert ids("double_applied", "timeline") == ["f1"]
    assert places["double_applied"]["scores"]["count"] == 1
    assert ids("lost", "alerts") == ["e3"]
    assert ids("phantom", "alerts") == ["never-sent"]
    assert (result["lost"], result["double_applied"], result["phantom"]) == (2, 2, 2), json.dumps(
        places
    )


async def test_fewer_events_applied_than_resolved_is_a_loss_in_scoring() -> None:
    platform = FakePlatform()
    platform.applied["cust-a"] = 1
    result = await platform.check(ledger())
    assert result["by_place"]["lost"]["scores"]["count"] == 2
    assert result["lost"] == 2 and result["double_applied"] == 0


def test_kill_plan_covers_every_service_each_round_and_infra_once() -> None:
    plan = plan_kills(rounds=3, rng=random.Random(1))
    assert sorted(plan) == sorted([*SERVICES] * 3 + [*INFRA_TARGETS])
    assert plan[0] not in INFRA_TARGETS


def test_the_invalid_copy_keeps_the_identifiers_and_gets_a_fresh_id() -> None:
    event = {"event_id": "x-1", "type": "page_view", "identifiers": {"email": "a@example.jp"}}
    bad = invalid_copy(event, 3)
    assert bad["event_id"] != "x-1" and bad["identifiers"] == event["identifiers"]
    assert bad["properties"]["nps"] == 11
