"""The checker: the ledger against what a user of the platform sees.

- **Timelines** (profile API): every simulated customer's profiles are found by looking up
  each identifier their events carried; each distinct profile's timeline is read to the end.
  *lost*: an acknowledged event in no timeline; *double*: an event twice in the timelines;
  *phantom*: an event in a timeline the ingest never acknowledged (rejected, or never sent).
- **Scores** (profile API, ``scores.events_applied``, the count the scoring service keeps):
  per profile, compared with the events its timeline holds. More is *double-applied* (an
  event counted twice), fewer is *lost* in scoring (resolved, never applied).
- **Alerts** (alerting API; its store when the listing is capped): each alert's evidence
  names the events that raised it. The per-event kinds (detractor: NPS 0-6, low CSAT,
  high effort) are expected exactly once for every acknowledged survey answer that qualifies:
  missing is *lost*, twice is *double*, raised by an event never acknowledged is *phantom*.
  negative_feedback (the sentiment model decides) is checked for double and phantom only.

Every finding keeps its evidence (event ids, customer ids), a sample of which is reported.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cxm_chaos.load import Ledger

# The scoring service's thresholds (cxm_scoring ScoringModel defaults) for the alert kinds
# one survey answer raises on its own.
PER_EVENT_RULES = {
    "detractor": lambda nps, csat, ces: nps is not None and nps <= 6,
    "low_csat": lambda nps, csat, ces: csat is not None and csat <= 2,
    "high_effort": lambda nps, csat, ces: ces is not None and ces >= 4,
}
CHECKED_KINDS = (*PER_EVENT_RULES, "negative_feedback")
API_LIMIT = 1000
EVIDENCE_KEPT = 20  # an alert keeps its newest 20 evidence entries
SAMPLE = 20


@dataclass
class Findings:
    lost: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    double: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    phantom: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, Any] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        return {
            "lost": sum(len(v) for v in self.lost.values()),
            "double_applied": sum(len(v) for v in self.double.values()),
            "phantom": sum(len(v) for v in self.phantom.values()),
        }

    def as_dict(self) -> dict[str, Any]:
        def part(d: dict[str, list[Any]]) -> dict[str, Any]:
            out = {}
            for k, v in d.items():
                if v:
                    unique = list({json.dumps(x, sort_keys=True): x for x in v}.values())
                    out[k] = {"count": len(v), "sample": unique[:SAMPLE]}
            return out

        return {
            **self.totals(),
            "by_place": {
                "lost": part(self.lost),
                "double_applied": part(self.double),
                "phantom": part(self.phantom),
            },
            "counts": self.counts,
        }


async def _gather_limited(coros: list[Any], limit: int = 16) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def _get(client: httpx.AsyncClient, url: str, **params: Any) -> httpx.Response:
    """GET, again after a dropped connection or a 5xx (a busy or just-restarted service):
    the check must not mistake a hiccup of the API for data that is not there."""
    for attempt in range(6):
        try:
            response = await client.get(url, params=params)
            if response.status_code < 500:
                return response
        except httpx.TransportError:
            if attempt == 5:
                raise
        await asyncio.sleep(0.5 * 2**attempt)
    return response


async def _lookup(client: httpx.AsyncClient, type_: str, value: str) -> dict[str, Any] | None:
    response = await _get(client, "/v1/profiles/lookup", type=type_, value=value)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


async def _timeline(client: httpx.AsyncClient, customer_id: str) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        response = await _get(client, f"/v1/profiles/{customer_id}/timeline", **params)
        response.raise_for_status()
        body = response.json()
        ids.extend(item["event_id"] for item in body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return ids


async def read_alerts(
    client: httpx.AsyncClient, database_url: str
) -> tuple[list[dict[str, Any]], str]:
    """Every alert of the checked kinds: from the API, or from the alert store when a listing
    reaches the API's limit (the listing has no paging)."""
    out: list[dict[str, Any]] = []
    for kind in CHECKED_KINDS:
        response = await _get(client, "/v1/alerts", kind=kind, limit=API_LIMIT)
        response.raise_for_status()
        listed = response.json()
        if len(listed) >= API_LIMIT:
            break
        out.extend(listed)
    else:
        return out, "alerting API"
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT alert_id, kind, customer_id, payload->'evidence' AS evidence"
                    " FROM alerting.alerts WHERE kind = ANY(:k)"
                ),
                {"k": list(CHECKED_KINDS)},
            )
            return [
                {
                    "alert_id": r.alert_id,
                    "kind": r.kind,
                    "customer": {"customer_id": r.customer_id},
                    "evidence": r.evidence or [],
                }
                for r in rows
            ], "alert store (API listing capped)"
    finally:
        await engine.dispose()


async def partitions_of(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [
        TopicPartition(topic, p["partition"])
        for t in described
        if t["error_code"] == 0
        for p in t["partitions"]
    ]


async def scoring_states(
    bootstrap: str, changelog: str, customers: set[str]
) -> dict[str, dict[str, Any] | None]:
    """The latest entry of ``customers`` in the scoring table's changelog (evidence only:
    which event ids the state says it applied, from which partitions and offsets)."""
    partitions = await partitions_of(bootstrap, changelog)
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    latest: dict[str, dict[str, Any] | None] = {}
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        wanted = {c.encode() for c in customers}
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    if r.key in wanted:
                        latest[r.key.decode()] = json.loads(r.value) if r.value else None
    finally:
        await consumer.stop()
    return latest


def _unapplied(state: dict[str, Any] | None, timeline: list[str]) -> dict[str, Any]:
    if not state:
        return {"state": None}
    applied = set(state.get("applied_ids") or [])
    missing = [e for e in timeline if e not in applied]
    return {
        # applied_ids keeps the newest 256: older events cannot be told apart
        "not_in_applied_ids": missing[:20] if len(timeline) <= 256 else "too many to tell",
        "offsets": state.get("offsets"),
        "merged_from": len(state.get("merged_from") or []),
    }


async def check(
    *,
    ledger: Ledger,
    profile_url: str,
    alerting_url: str,
    token: str,
    database_url: str,
    bootstrap: str | None = None,
    changelog: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Findings:
    findings = Findings()
    acked = ledger.acked()
    rejected = ledger.rejected()
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(
            base_url=profile_url, headers=headers, timeout=60, transport=transport
        ) as profile_api,
        httpx.AsyncClient(
            base_url=alerting_url, headers=headers, timeout=60, transport=transport
        ) as alerting_api,
    ):
        # -- profiles of every simulated customer ----------------------------------------
        idents = [(c, t, v) for c, ids in ledger.identifiers.items() for t, v in sorted(ids)]
        found = await _gather_limited([_lookup(profile_api, t, v) for _, t, v in idents])
        profiles: dict[str, dict[str, Any]] = {}
        owners: dict[str, set[int]] = defaultdict(set)
        for (customer, _, _), profile in zip(idents, found, strict=True):
            if profile is not None:
                profiles[profile["customer_id"]] = profile
                owners[profile["customer_id"]].add(customer)
        timelines = dict(
            zip(
                profiles,
                await _gather_limited([_timeline(profile_api, cid) for cid in profiles]),
                strict=True,
            )
        )
        # -- timelines -------------------------------------------------------------------
        seen: Counter[str] = Counter()
        where: dict[str, str] = {}
        for cid, ids in timelines.items():
            seen.update(ids)
            for event_id in ids:
                where[event_id] = cid
        for event_id in sorted(acked - seen.keys()):
            sent = ledger.events[event_id]
            findings.lost["timeline"].append({"event_id": event_id, "customer": sent.customer})
        for event_id, n in sorted(seen.items()):
            if n > 1:
                findings.double["timeline"].append({"event_id": event_id, "times": n})
            if event_id not in acked:
                why = "rejected" if event_id in rejected else "never acknowledged"
                findings.phantom["timeline"].append(
                    {"event_id": event_id, "customer_id": where[event_id], "why": why}
                )
        misfiled = [
            e
            for e, cid in where.items()
            if e in ledger.events and ledger.events[e].customer not in owners[cid]
        ]
        # -- scores ------------------------------------------------------------------------
        applied_total = 0
        off: dict[str, tuple[int, int]] = {}
        for cid, profile in profiles.items():
            applied = int((profile.get("scores") or {}).get("events_applied") or 0)
            applied_total += applied
            if applied != len(timelines[cid]):
                off[cid] = (applied, len(timelines[cid]))
        states = (
            await scoring_states(bootstrap, changelog, set(off))
            if off and bootstrap and changelog
            else {}
        )
        for cid, (applied, held) in sorted(off.items()):
            entry = {"customer_id": cid, "events_applied": applied, "in_timeline": held}
            if cid in states:
                entry["scoring_state"] = _unapplied(states[cid], timelines[cid])
            # one finding per event counted twice / never applied, with its profile
            if applied > held:
                findings.double["scores"].extend([entry] * (applied - held))
            else:
                findings.lost["scores"].extend([entry] * (held - applied))
        # -- alerts ------------------------------------------------------------------------
        alerts, alert_source = await read_alerts(alerting_api, database_url)
        raised: Counter[tuple[str, str]] = Counter()
        full: set[tuple[str, str]] = set()  # (kind, customer) whose evidence may be cut
        for alert in alerts:
            evidence = alert.get("evidence") or []
            if len(evidence) >= EVIDENCE_KEPT:
                full.add((alert["kind"], alert["customer"]["customer_id"]))
            for entry in evidence:
                for event_id in entry.get("event_ids") or []:
                    raised[(entry.get("kind") or alert["kind"], event_id)] += 1
        for (kind, event_id), n in sorted(raised.items()):
            if n > 1:
                findings.double["alerts"].append({"kind": kind, "event_id": event_id, "times": n})
            if event_id not in acked:
                why = "rejected" if event_id in rejected else "never acknowledged"
                findings.phantom["alerts"].append({"kind": kind, "event_id": event_id, "why": why})
        expected = 0
        for event_id in sorted(acked):
            sent = ledger.events[event_id]
            if sent.survey is None:
                continue
            for kind, rule in PER_EVENT_RULES.items():
                if not rule(*sent.survey):
                    continue
                expected += 1
                if (kind, event_id) in raised:
                    continue
                if (kind, where.get(event_id)) in full:
                    continue  # the alert's evidence list may have dropped it
                findings.lost["alerts"].append({"kind": kind, "event_id": event_id})
    statuses = Counter(ledger.status.get(e, "unanswered") for e in ledger.events)
    findings.counts = {
        "events_generated": len(ledger.events),
        "acknowledged": len(acked),
        "rejected": len(rejected),
        "answers": dict(statuses),
        "profiles": len(profiles),
        "events_in_timelines": sum(seen.values()),
        "events_applied_in_scores": applied_total,
        "events_in_another_customers_timeline": len(misfiled),
        "alerts_read": len(alerts),
        "alerts_source": alert_source,
        "per_event_alerts_expected": expected,
        "alert_evidence_entries": sum(raised.values()),
    }
    return findings
