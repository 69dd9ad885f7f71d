"""Scale-out: two profile workers and two scoring workers, one of each killed mid-stream, give
a user the same platform as one worker per service.

The same deterministic stream (``cxm_sim``, fixed seed: 50 customers over two weeks, a few
hundred events with surveys from drifting customers that raise alerts) is sent to two
platforms started side by side, each with its own topic prefix, database and data
directories, and topics of four partitions:

- (A) one profile worker and one scoring worker;
- (B) two profile workers and two scoring workers splitting the partitions. Once part of the
  stream is sent and both second workers have processed some of it (asserted, with fewer
  events scored than sent in all), they are SIGKILLed; the rest is sent afterwards and the
  survivors must take over their partitions (offsets not committed are redelivered, the
  scoring state comes back from its changelog).

Then, once every registered customer's profile shows all their events scored, what a user
relies on is compared customer by customer (found by email lookup, since customer ids are
random per platform):

- the profile's identifiers (type and masked value) and cluster membership: every identifier
  the simulator gave the customer leads to that same profile — resolution did not depend on
  which worker saw which event;
- the scores: latest NPS / CSAT / CES answers, churn risk (within float tolerance) and
  ``events_applied``, which equals the number of events the simulator generated for the
  customer in both runs — nothing lost and nothing double-counted by the redelivery after the
  kill;
- the alerts in the alerting API: the set of (customer, kind) is the same, and for the kinds
  one triggering event raises (detractor, negative feedback, low CSAT, high effort) so is
  their number per customer — a signal replayed after the kill must not become a second
  alert, and none may be missing. churn_risk_high follows the state and can fire more than
  once depending on how events were batched: only whether it fired.

Not compared: customer ids and ``merged_ids`` (provisional profiles merged along the way
depend on processing order), decile/RFM segments and their segment_entered/segment_exited
alerts (cut points are republished every few seconds from whichever worker owns a partition,
so when a customer crosses one depends on timing, not on the stream), and churn_risk_rising
(a jump between two successive score snapshots: one snapshot per customer per batch, so it
depends on how events were batched).
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from cxm_sim.journeys import SimConfig, World

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = 11
CUSTOMERS = 50
WEEKS = 2
BATCH = 100
KILL_AFTER = 0.4  # share of the stream sent before the kill
KINDS = (
    "churn_risk_high",
    "churn_risk_rising",
    "detractor",
    "negative_feedback",
    "low_csat",
    "high_effort",
    "segment_entered",
    "segment_exited",
)
# Kinds raised by one triggering event each (a survey answer, a comment): their number per
# customer is fixed by the stream. The others follow the state (a segment entered, the churn
# risk crossing a line) and may fire more than once: only whether they fired is compared.
PER_EVENT = {"detractor", "negative_feedback", "low_csat", "high_effort"}
# churn_risk_rising (a jump between two successive snapshots) and segment_entered/exited
# (decile and RFM cut points republished every few seconds) depend on how events were
# batched and on timing, not only on the stream: left out.
COMPARED = PER_EVENT | {"churn_risk_high"}
# The scoring workers' group session: how soon a killed worker's partitions move (the
# profile service has no such setting: faust's default of 60 s applies).
SCORING_ENV = {"CXM_BROKER_SESSION_TIMEOUT_S": "10", "CXM_BROKER_HEARTBEAT_INTERVAL_S": "1"}


Ident = tuple[str, str]  # (type, value)


def stream() -> tuple[list[dict[str, Any]], dict[int, list[Ident]], Counter[int]]:
    """The events, the identifiers each simulated customer used in them, their event counts."""
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    world = World(SimConfig(customers=CUSTOMERS, weeks=WEEKS, seed=SEED, end=end, namespace="so"))
    planned = list(world.events())
    used: dict[int, set[Ident]] = {}
    for p in planned:
        used.setdefault(p.customer, set()).update(p.event["identifiers"].items())
    ids = {c: sorted(i) for c, i in sorted(used.items())}
    return [p.event for p in planned], ids, Counter(p.customer for p in planned)


async def metric(client: httpx.AsyncClient, url: str, *names: str) -> float:
    text = (await client.get(f"{url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if any(line.startswith((f"{n} ", f"{n}{{")) for n in names)
    )


SCORED = ("cxm_scoring_events_scored_total", "cxm_scoring_events_skipped_total")


async def send(platform: Any, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), BATCH):
        await platform.post(*events[i : i + BATCH])


async def lookup(platform: Any, type_: str, value: str) -> dict[str, Any] | None:
    response = await platform.lookup(type_, value)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.json()


async def profiles_of(
    platform: Any, customers: dict[int, list[Ident]]
) -> dict[int, dict[str, dict[str, Any]]]:
    """Per simulated customer, the profiles their identifiers lead to, by customer id."""
    gate = asyncio.Semaphore(16)

    async def one(ident: Ident) -> dict[str, Any] | None:
        async with gate:
            return await lookup(platform, *ident)

    found = await asyncio.gather(*(one(i) for ids in customers.values() for i in ids))
    out: dict[int, dict[str, dict[str, Any]]] = {}
    it = iter(found)
    for index, ids in customers.items():
        for ident in ids:
            profile = next(it)
            key = profile["customer_id"] if profile else f"missing:{ident}"
            entry = out.setdefault(index, {}).setdefault(key, {"profile": profile, "ids": []})
            entry["ids"].append(ident)
    return out


async def settled(
    platform: Any, customers: dict[int, list[Ident]], expected: Counter[int], total: int
) -> None:
    """Every event is applied to the scores of the profile it resolved to."""
    applied: dict[int, int] = {}

    async def all_scored() -> bool:
        applied.clear()
        seen: set[str] = set()
        for index, by_cid in (await profiles_of(platform, customers)).items():
            for cid, entry in by_cid.items():
                if cid not in seen:
                    seen.add(cid)
                    scores = (entry["profile"] or {}).get("scores") or {}
                    applied[index] = applied.get(index, 0) + scores.get("events_applied", 0)
        return sum(applied.values()) >= total

    try:
        await platform.until(all_scored, timeout=150, what="every event scored")
    except AssertionError as exc:
        off = {i: (applied.get(i, 0), n) for i, n in expected.items() if applied.get(i, 0) != n}
        # Where they were lost: events in the profiles' timelines were resolved (profile
        # service) and their scores not applied (scoring service).
        timelines: dict[int, int] = {}
        for index in off:
            for cid in (await profiles_of(platform, {index: customers[index]}))[index]:
                response = await platform.api["profile"].get(
                    f"/v1/profiles/{cid}/timeline", params={"limit": 100}
                )
                if response.status_code == 200:
                    timelines[index] = timelines.get(index, 0) + len(response.json()["items"])
        raise AssertionError(
            f"{exc}\n(customer: (scores.events_applied, sent)) {off}"
            f"\n(customer: events in timeline) {timelines}"
        ) from None


async def alerts_quiet(platform: Any) -> list[dict[str, Any]]:
    """All alerts, once their number stops changing (equal reads 3 s apart)."""

    async def everything() -> list[dict[str, Any]]:
        return [a for kind in KINDS for a in await platform.alerts(kind=kind)]

    alerts = await everything()
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        await asyncio.sleep(3)
        again = await everything()
        if len(again) == len(alerts):
            return again
        alerts = again
    return alerts


def latest(scores: dict[str, Any], kind: str) -> Any:
    return ((scores.get(kind) or {}).get("latest") or {}).get("score")


async def what_a_user_sees(
    platform: Any, customers: dict[int, list[Ident]], expected: Counter[int]
) -> dict[str, Any]:
    profiles: dict[tuple[int, Ident], Any] = {}
    scores: dict[tuple[int, Ident], dict[str, Any]] = {}
    owner: dict[str, tuple[int, Ident]] = {}  # customer id (current or merged) -> who
    for index, by_cid in (await profiles_of(platform, customers)).items():
        for entry in by_cid.values():
            profile = entry["profile"]
            assert profile is not None, (index, entry["ids"])
            who = (index, min(entry["ids"]))  # a customer, and which of their profiles
            for cid in (profile["customer_id"], *profile["merged_ids"]):
                owner[cid] = who
            # Cluster membership: which of the customer's identifiers share this profile.
            profiles[who] = (
                sorted(entry["ids"]),
                sorted((i["type"], i["masked"]) for i in profile["identifiers"]),
            )
            s = profile["scores"] or {}
            scores[who] = {
                "events_applied": s.get("events_applied"),
                "nps": latest(s, "nps"),
                "csat": latest(s, "csat"),
                "ces": latest(s, "ces"),
                "churn_risk": s.get("churn_risk"),
            }
            if len(by_cid) == 1:  # one profile: every event of the customer counted once
                assert s.get("events_applied") == expected[index], (who, s)
        if any(t == "user_id" for t, _ in customers[index]):
            # A registered customer is one profile whatever the processing order.
            assert len(by_cid) == 1, (index, [e["ids"] for e in by_cid.values()])
    alerts = await alerts_quiet(platform)
    alerts = [a for a in alerts if a["kind"] in COMPARED]
    unknown = [a for a in alerts if a["customer"]["customer_id"] not in owner]
    assert not unknown, unknown[:3]
    keyed = Counter((owner[a["customer"]["customer_id"]], a["kind"]) for a in alerts)
    per_event = Counter(k for k in keyed.elements() if k[1] in PER_EVENT)
    return {"profiles": profiles, "scores": scores, "alerts": set(keyed), "per_event": per_event}


async def one_worker_each(launch: Any, events, customers, expected) -> dict[str, Any]:
    async with launch(**SCORING_ENV) as launched:
        platform = launched.platform
        await send(platform, events)
        await settled(platform, customers, expected, len(events))
        return await what_a_user_sees(platform, customers, expected)


async def two_workers_each_one_killed(
    launch: Any, events, customers, expected
) -> tuple[dict[str, Any], dict[str, float]]:
    async with launch(workers={"profile": 2, "scoring": 2}, **SCORING_ENV) as launched:
        platform = launched.platform
        (profile_2,) = launched.of("profile")[1:]
        (scoring_2,) = launched.of("scoring")[1:]
        cut = int(len(events) * KILL_AFTER)
        await send(platform, events[:cut])

        async with httpx.AsyncClient(timeout=5) as plain:

            async def both_second_workers_busy() -> bool:
                resolved = await metric(plain, profile_2.url, "cxm_profile_events_total")
                scored = await metric(plain, scoring_2.url, *SCORED)
                return resolved > 0 and scored > 0

            await platform.until(
                both_second_workers_busy, timeout=60, what="the second workers to process events"
            )
            seen = {
                "profile-2 resolved": await metric(
                    plain, profile_2.url, "cxm_profile_events_total"
                ),
                "scoring-2 scored": await metric(plain, scoring_2.url, *SCORED),
                "scoring-1 scored": await metric(plain, launched.of("scoring")[0].url, *SCORED),
            }
        for worker in (profile_2, scoring_2):
            worker.process.proc.send_signal(signal.SIGKILL)
        for worker in (profile_2, scoring_2):
            worker.process.proc.wait(timeout=10)
        scored_at_kill = seen["scoring-1 scored"] + seen["scoring-2 scored"]
        # Mid-stream: some but not all of the stream was processed when they died.
        assert 0 < seen["profile-2 resolved"] and 0 < seen["scoring-2 scored"]
        assert 0 < scored_at_kill < len(events), seen

        await send(platform, events[cut:])
        await settled(platform, customers, expected, len(events))
        for worker in (launched.of("profile")[0], launched.of("scoring")[0]):
            assert worker.process.proc.poll() is None, worker.process.tail()
        return await what_a_user_sees(platform, customers, expected), seen


@pytest.mark.skip(
    reason="known bug, issue 8: with two profile + two scoring workers and one of each "
    "SIGKILLed mid-stream, some customers' scores stay below the events they were sent "
    "(timelines complete, so the loss is in scoring's recovery/hand-off or profile's "
    "scores consumer); once an event was applied twice. Failed 4 of 5 runs. Unskip once fixed."
)
async def test_two_workers_with_one_killed_give_the_same_profiles_scores_and_alerts(
    launch_platform,
) -> None:
    events, customers, expected = stream()
    assert len(customers) >= 40
    assert 300 <= len(events) <= 1000 and any(e["type"] == "survey_response" for e in events)
    started = time.monotonic()
    # Side by side (a failure in one cancels the other, which stops its processes).
    async with asyncio.TaskGroup() as both:
        a = both.create_task(one_worker_each(launch_platform, events, customers, expected))
        b = both.create_task(
            two_workers_each_one_killed(launch_platform, events, customers, expected)
        )
    single, (scaled, seen) = a.result(), b.result()
    print(f"{len(events)} events; at the kill: {seen}; {time.monotonic() - started:.0f}s")

    assert scaled["profiles"] == single["profiles"]
    assert scaled["scores"].keys() == single["scores"].keys()
    for index, one in single["scores"].items():
        two = scaled["scores"][index]
        assert {k: v for k, v in two.items() if k != "churn_risk"} == {
            k: v for k, v in one.items() if k != "churn_risk"
        }, index
        if one["churn_risk"] is None or two["churn_risk"] is None:
            assert one["churn_risk"] == two["churn_risk"], index
        else:
            assert math.isclose(two["churn_risk"], one["churn_risk"], abs_tol=1e-6), index
    assert single["alerts"], "the stream raised no alert"
    assert {k for _, k in single["alerts"]} >= {"detractor"}
    assert scaled["alerts"] == single["alerts"], (
        sorted(scaled["alerts"] - single["alerts"]),
        sorted(single["alerts"] - scaled["alerts"]),
    )
    assert scaled["per_event"] == single["per_event"], (
        scaled["per_event"] - single["per_event"],
        single["per_event"] - scaled["per_event"],
    )
