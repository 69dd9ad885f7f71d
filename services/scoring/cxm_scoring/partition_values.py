"""Follow a small compacted topic of per-partition values (key = partition number): every
worker reads the whole topic (no group) and keeps the newest value of each partition, so any
worker can answer for the whole base (base statistics for deciles/RFM, insight aggregates)."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import orjson

from cxm_shared.kafka import make_consumer


async def follow_partition_values(
    bootstrap: str,
    topic: str,
    values: MutableMapping[int, Any],
    *,
    decode: Callable[[Any], Any] = lambda v: v,
    on_change: Callable[[], None],
) -> None:
    """Keep ``values[partition]`` at the newest value on ``topic`` (a tombstone removes it) and
    call ``on_change`` after each fetched batch that changed something. Runs until cancelled."""
    consumer = make_consumer(bootstrap, topic, group_id=None)
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            changed = False
            for records in batches.values():
                for record in records:
                    if record.key is None:
                        continue
                    partition = int(record.key)
                    if record.value is None:
                        values.pop(partition, None)
                    else:
                        values[partition] = decode(orjson.loads(record.value))
                    changed = True
            if changed:
                on_change()
    finally:
        await consumer.stop()
