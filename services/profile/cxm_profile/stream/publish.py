"""Messages the profile service publishes, built from identity decisions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from cxm_profile.identity.models import MergeCustomers, UnmergeCustomers
from cxm_profile.stream.outbox import Message
from cxm_shared.events import CustomerErased, IdentityChange, ResolvedTouchpoint, Touchpoint, encode
from cxm_shared.topics import Topics


def merged(merge: MergeCustomers) -> IdentityChange:
    return IdentityChange(
        kind="merged",
        merge_id=merge.merge_id,
        winner_id=merge.winner_id,
        loser_id=merge.loser_id,
        reason=f"{merge.rule}: {merge.joined_by.type} joined {merge.joined_to.type}",
        event_id=merge.event_id,
        occurred_at=merge.merged_at,
    )


def unmerged(unmerge: UnmergeCustomers, *, split_from: str) -> IdentityChange:
    return IdentityChange(
        kind="unmerged",
        merge_id=unmerge.merge_id,
        winner_id=split_from,
        loser_id=unmerge.loser_id,
        reason=unmerge.reason,
        occurred_at=unmerge.unmerged_at,
    )


async def send_all(producer: AIOKafkaProducer, messages: Iterable[Message]) -> None:
    """Send (topic, key, value) messages and wait until the broker acknowledged every one."""
    futures = [
        await producer.send(topic, key=key.encode(), value=value) for topic, key, value in messages
    ]
    await asyncio.gather(*futures)


def resolution_messages(
    topics: Topics,
    *,
    touchpoint: Touchpoint,
    customer_id: str,
    merges: Iterable[MergeCustomers],
) -> list[Message]:
    resolved = ResolvedTouchpoint(**touchpoint.model_dump(), customer_id=customer_id)
    messages: list[tuple[str, str, bytes | None]] = [
        (topics.identity_merges, m.winner_id, encode(merged(m))) for m in merges
    ]
    messages.append((topics.touchpoints_resolved, customer_id, encode(resolved)))
    return messages


def change_messages(topics: Topics, changes: Iterable[IdentityChange]) -> list[Message]:
    return [(topics.identity_merges, c.winner_id, encode(c)) for c in changes]


def erasure_messages(
    topics: Topics, *, customer_ids: Iterable[str], request_id: str
) -> list[Message]:
    now = datetime.now(UTC)
    messages: list[Message] = []
    for customer_id in customer_ids:
        erased = CustomerErased(customer_id=customer_id, request_id=request_id, occurred_at=now)
        messages.append((topics.erasures, customer_id, encode(erased)))
        messages.append((topics.scores, customer_id, None))  # tombstone on the compacted topic
    return messages
