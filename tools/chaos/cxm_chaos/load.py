"""The load generator and its ledger.

Events come from the deterministic simulator (real customers across devices and channels,
surveys, angry feedback that raises alerts). Every so often an invalid copy of a real event
(a survey score out of range, carrying the customer's real identifiers and a fresh id) is
mixed in: the ingest must reject it, and it must never show up anywhere.

The ledger records, per event id, what the ingest answered: ``accepted`` or ``duplicate``
(both acknowledged: a duplicate is a retry of a request whose answer was lost, e.g. when the
ingest was killed mid-request) or ``rejected``. A batch is retried with the same ids until it
gets an answer, whatever is down meanwhile, so no event is left in doubt.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from cxm_sim.journeys import SimConfig, World

ACKED = frozenset({"accepted", "duplicate"})
BACKOFF_S = (0.2, 0.5, 1.0, 2.0)


@dataclass(slots=True)
class Sent:
    """What the checker needs of one event (kept small: a big run holds 200k of these)."""

    customer: int  # simulated customer index, -1 unknown
    type: str
    survey: tuple[Any, Any, Any] | None  # (nps, csat, ces) of a survey_response


@dataclass
class Ledger:
    events: dict[str, Sent] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    # simulated customer index -> the identifiers (type, value) their events carried
    identifiers: dict[int, set[tuple[str, str]]] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    answers: dict[str, int] = field(default_factory=dict)  # HTTP status / error -> count
    first_ack: float | None = None
    last_ack: float | None = None

    def acked(self) -> set[str]:
        return {e for e, s in self.status.items() if s in ACKED}

    def rejected(self) -> set[str]:
        return {e for e, s in self.status.items() if s == "rejected"}

    def counts(self) -> dict[str, int]:
        out = {"accepted": 0, "duplicate": 0, "rejected": 0, "unanswered": 0}
        for event_id in self.events:
            out[self.status.get(event_id, "unanswered")] += 1
        return out

    def write(self, path: Path) -> None:
        """One JSON line per event: id, simulated customer, type, answer."""
        with path.open("w") as out:
            for event_id, sent in self.events.items():
                row = {
                    "event_id": event_id,
                    "customer": sent.customer,
                    "type": sent.type,
                    "status": self.status.get(event_id, "unanswered"),
                }
                out.write(json.dumps(row) + "\n")


def _sent(customer: int, event: dict[str, Any]) -> Sent:
    survey = None
    if event["type"] == "survey_response":
        p = event.get("properties") or {}
        survey = (p.get("nps"), p.get("csat"), p.get("ces"))
    return Sent(customer, event["type"], survey)


def invalid_copy(event: dict[str, Any], index: int) -> dict[str, Any]:
    """A copy of a real event the ingest must reject (nps out of range), with a fresh id."""
    bad = copy.deepcopy(event)
    bad["event_id"] = f"{event['event_id']}-invalid-{index}"
    bad["type"] = "survey_response"
    bad["properties"] = {"nps": 11, "comment": "invalid on purpose"}
    return bad


def planned_batches(
    *, customers: int, weeks: int, seed: int, namespace: str, batch: int, invalid_every: int
) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """(simulated customer, event) batches in time order, week by week (never the whole
    stream in memory); every ``invalid_every``-th batch carries one invalid event."""
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    world = World(
        SimConfig(customers=customers, weeks=weeks, seed=seed, end=end, namespace=namespace)
    )
    pending: list[tuple[int, dict[str, Any]]] = []
    count = 0
    for week in world.weeks():
        for planned in week:
            pending.append((planned.customer, planned.event))
            if len(pending) >= batch:
                count += 1
                if invalid_every and count % invalid_every == 0:
                    pending.append((pending[0][0], invalid_copy(pending[0][1], count)))
                yield pending
                pending = []
    if pending:
        yield pending


def count_events(*, customers: int, weeks: int, seed: int, namespace: str) -> int:
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    world = World(
        SimConfig(customers=customers, weeks=weeks, seed=seed, end=end, namespace=namespace)
    )
    return sum(len(week) for week in world.weeks())


async def _post_until_answered(
    client: httpx.AsyncClient, body: bytes, ledger: Ledger, *, give_up_at: float
) -> dict[str, Any] | None:
    attempt = 0
    while True:
        ledger.requests += 1
        if attempt:
            ledger.retries += 1
        try:
            response = await client.post(
                "/v1/events/batch", content=body, headers={"content-type": "application/json"}
            )
            key = str(response.status_code)
        except httpx.HTTPError as exc:
            response = None
            key = type(exc).__name__
        ledger.answers[key] = ledger.answers.get(key, 0) + 1
        if response is not None and response.status_code == 200:
            return response.json()
        if response is not None and response.status_code == 400:
            # every event of the batch refused: the body names them per event
            return response.json() | {"all_rejected": True}
        if time.monotonic() > give_up_at:
            return None
        await asyncio.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
        attempt += 1


def _record(ledger: Ledger, batch: list[tuple[int, dict[str, Any]]], answer: dict[str, Any]):
    now = time.monotonic()
    ids = [e["event_id"] for _, e in batch]
    if answer.get("all_rejected"):
        for event_id in ids:
            ledger.status[event_id] = "rejected"
        return
    for item in answer.get("results", []):
        event_id = item.get("event_id") or ids[item["index"]]
        ledger.status[event_id] = item["status"]
        if item["status"] in ACKED:
            ledger.first_ack = ledger.first_ack or now
            ledger.last_ack = now


async def run_load(
    *,
    ingest_url: str,
    write_key: str,
    batches: Iterator[list[tuple[int, dict[str, Any]]]],
    ledger: Ledger,
    rate: float,
    concurrency: int,
    give_up_s: float = 600.0,
    progress: Any = None,
) -> None:
    """Post every batch (``concurrency`` in flight), pacing batch starts at ``rate`` events/s
    (open loop: a stall is caught up afterwards, as real channel systems would)."""
    queue: asyncio.Queue[list[tuple[int, dict[str, Any]]] | None] = asyncio.Queue(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=ingest_url, auth=(write_key, ""), timeout=30, limits=limits
    ) as client:

        async def worker() -> None:
            while (batch := await queue.get()) is not None:
                body = json.dumps(
                    {"events": [e for _, e in batch]}, ensure_ascii=False, separators=(",", ":")
                ).encode()
                answer = await _post_until_answered(
                    client, body, ledger, give_up_at=time.monotonic() + give_up_s
                )
                if answer is not None:
                    _record(ledger, batch, answer)
                if progress is not None:
                    progress(len(batch))

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        started, due = time.monotonic(), 0.0
        try:
            for batch in batches:
                for customer, event in batch:
                    ledger.events[event["event_id"]] = _sent(customer, event)
                    ids = ledger.identifiers.setdefault(customer, set())
                    ids.update((t, str(v)) for t, v in event.get("identifiers", {}).items())
                wait = started + due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                due += len(batch) / rate
                await queue.put(batch)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
