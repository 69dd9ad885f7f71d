"""Posting events to the ingest's batch API, the way a well-behaved channel system does:
bounded batches, a few requests in flight, and retries (same event ids, so the ingest counts
each event once) when the platform says "later" (429/503 with Retry-After) or the connection
drops."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

# The ingest's documented limits are 2,500 events and 500 kB per batch; stay well inside.
MAX_BATCH_BYTES = 400 * 1024
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 8
MAX_BACKOFF_S = 15.0


class SendError(RuntimeError):
    """The platform refused the traffic in a way retrying cannot fix (bad key, gone)."""


@dataclass(slots=True)
class SendStats:
    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    requests: int = 0
    retries: int = 0
    rejected_ids: set[str] = field(default_factory=set)
    # The first few rejection messages (field paths and reasons; no event content).
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def record(self, result: dict[str, Any]) -> None:
        self.accepted += int(result.get("accepted", 0))
        self.duplicate += int(result.get("duplicate", 0))
        self.rejected += int(result.get("rejected", 0))
        for item in result.get("results", []):
            if item.get("status") == "rejected":
                if item.get("event_id"):
                    self.rejected_ids.add(item["event_id"])
                if len(self.rejections) < 10:
                    self.rejections.append(
                        {"reason": item.get("reason"), "errors": item.get("errors", [])[:3]}
                    )

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "requests": self.requests,
            "retries": self.retries,
            "rejections": self.rejections,
        }


def encode_batch(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"events": events}, ensure_ascii=False, separators=(",", ":")).encode()


def split_batches(events: list[dict[str, Any]], *, size: int) -> list[list[dict[str, Any]]]:
    """Chunks of at most ``size`` events, halved again while a chunk is over the byte cap."""
    out: list[list[dict[str, Any]]] = []
    pending = [events[i : i + size] for i in range(0, len(events), size)]
    while pending:
        chunk = pending.pop(0)
        if len(chunk) > 1 and len(encode_batch(chunk)) > MAX_BATCH_BYTES:
            half = len(chunk) // 2
            pending[:0] = [chunk[:half], chunk[half:]]
            continue
        out.append(chunk)
    return out


def _retry_after(response: httpx.Response, attempt: int) -> float:
    raw = response.headers.get("retry-after", "")
    if raw.isdigit():
        return min(float(raw), MAX_BACKOFF_S)
    return min(0.25 * 2**attempt, MAX_BACKOFF_S)


async def post_batch(
    client: httpx.AsyncClient, events: list[dict[str, Any]], stats: SendStats
) -> None:
    body = encode_batch(events)
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            stats.retries += 1
        try:
            stats.requests += 1
            response = await client.post(
                "/v1/events/batch", content=body, headers={"content-type": "application/json"}
            )
        except httpx.TransportError as exc:
            if attempt == MAX_ATTEMPTS - 1:
                raise SendError(f"ingest unreachable: {type(exc).__name__}") from exc
            await asyncio.sleep(min(0.25 * 2**attempt, MAX_BACKOFF_S))
            continue
        if response.status_code == 200:
            stats.record(response.json())
            return
        if response.status_code in RETRY_STATUSES and attempt < MAX_ATTEMPTS - 1:
            await asyncio.sleep(_retry_after(response, attempt))
            continue
        if response.status_code == 400:
            # Every event of the batch was refused; the body says why, per field.
            stats.rejected += len(events)
            stats.rejected_ids.update(e["event_id"] for e in events)
            if len(stats.rejections) < 10:
                detail = response.json()
                stats.rejections.append(
                    {"reason": detail.get("message"), "errors": detail.get("errors", [])[:3]}
                )
            return
        raise SendError(
            f"ingest answered {response.status_code}: {response.text[:300]}"
            + (" (check --write-key)" if response.status_code == 401 else "")
        )
    raise SendError("ingest kept answering 'try later'; giving up")


async def send_all(
    batches: AsyncIterator[list[dict[str, Any]]],
    *,
    client: httpx.AsyncClient,
    concurrency: int,
    rate: float | None,
    on_batch: Callable[[int], None],
) -> SendStats:
    """Post every batch with ``concurrency`` requests in flight; ``rate`` (events/s) paces
    the start of each batch (open loop), None sends as fast as the platform answers."""
    stats = SendStats()
    queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def worker() -> None:
        while (batch := await queue.get()) is not None:
            await post_batch(client, batch, stats)
            on_batch(len(batch))

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]

    async def hand_over(item: list[dict[str, Any]] | None) -> None:
        """Queue ``item``, unless a worker fails first: then raise its error (a dead worker
        would otherwise leave this waiting on a full queue for ever)."""
        put = asyncio.ensure_future(queue.put(item))
        try:
            while not put.done():
                running = {t for t in workers if not t.done()}
                if not running:
                    raise SendError("every sender stopped")
                done, _ = await asyncio.wait({put, *running}, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {put}:
                    task.result()  # a failed worker raises here; one that got None just ends
        finally:
            put.cancel()

    started = time.monotonic()
    due = 0.0
    try:
        async for batch in batches:
            if rate:
                wait = started + due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                due += len(batch) / rate
            stats.sent += len(batch)
            await hand_over(batch)
        for _ in workers:
            await hand_over(None)
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
    return stats
