"""faust's offset bookkeeping with cxm_shared.faust_safety installed (faust's real consumer and
producer buffer, no broker: offsets are only computed, never sent): an event faust discards
around a rebalance leaves its offset uncommitted, and a flush waits for every table write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from cxm_shared.faust_safety import DISCARDED, RebalanceSafeEvent
from cxm_shared.streaming import make_faust_app

TOPIC = "acks-topic"
tp = TP(TOPIC, 0)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[faust.App]:
    app = make_faust_app("acks-test", bootstrap="127.0.0.1:1", datadir=tmp_path, partitions=1)
    topic = app.topic(TOPIC, key_serializer="raw", value_serializer="raw")

    @app.agent(topic, concurrency=1)
    async def agent(stream: faust.StreamT) -> None:  # pragma: no cover - never started
        async for _ in stream:
            pass

    app.topics.acking_topics.add(TOPIC)  # what the conductor does when the agent starts
    app.consumer._committed_offset[tp] = 100  # next offset to read, as after a seek
    yield app
    # The aiokafka driver's consumer thread made a loop of its own (never started here).
    app.consumer._thread.thread_loop.close()


def delivered(app: faust.App, offset: int, *, streams: int = 1) -> faust.EventT:
    """A fetched message as the conductor hands it to ``streams`` streams."""
    message = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, tp=tp)
    message.incref(streams)
    return app.create_event(b"k", b"v", None, message)


def processed(app: faust.App, event: faust.EventT) -> None:
    """What a stream does to an event it hands to its agent, then the ack after it."""
    event.message.tracked = True
    app.consumer.track_message(event.message)


async def test_the_app_uses_the_rebalance_safe_event(app: faust.App) -> None:
    assert isinstance(delivered(app, 100), RebalanceSafeEvent)


async def test_a_processed_event_is_committable(app: faust.App) -> None:
    event = delivered(app, 100)
    processed(app, event)
    assert event.ack() is True
    assert app.consumer._new_offset(tp) == 101
    assert not app.consumer._unacked_messages


async def test_a_discarded_event_is_released_but_its_offset_is_not_committable(
    app: faust.App,
) -> None:
    before = DISCARDED.labels(TOPIC)._value.get()
    event = delivered(app, 100)
    assert event.ack() is False  # what faust's stream does with an event it skips
    assert event.message.acked  # nothing waits for it (Consumer.wait_empty)
    assert event.message not in app.consumer._unacked_messages
    assert app.consumer._new_offset(tp) is None  # faust alone would commit 101
    assert DISCARDED.labels(TOPIC)._value.get() == before + 1

    # Fetched again after the seek (a new message object), processed: now committable.
    again = delivered(app, 100)
    processed(app, again)
    assert again.ack() is True
    assert app.consumer._new_offset(tp) == 101


async def test_the_commit_stops_before_a_discarded_event(app: faust.App) -> None:
    first, skipped, later = delivered(app, 100), delivered(app, 101), delivered(app, 102)
    processed(app, first)
    first.ack()
    skipped.ack()
    processed(app, later)
    later.ack()
    # 100 done, 101 never processed: the commit goes no further than 101 (next to read).
    assert app.consumer._new_offset(tp) == 101


async def test_one_stream_discarding_a_shared_message_keeps_it_uncommitted(app: faust.App) -> None:
    event = delivered(app, 100, streams=2)
    assert event.ack() is False  # the first stream discards it: one reference left
    assert not event.message.acked
    processed(app, event)  # the second stream processes it
    assert event.ack() is False
    assert event.message.acked
    assert app.consumer._new_offset(tp) is None


class SlowChannel:
    """A topic whose hand-over to the Kafka client takes a while (a busy machine)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.published: list[Any] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(self.delay)
        self.published.append(fut)


async def test_a_flush_waits_for_every_queued_record_however_slow(app: faust.App) -> None:
    buffer = ProducerBuffer()
    buffer.app = app
    await buffer.start()
    try:
        channel = SlowChannel(delay=0.3)  # faust's own flush gives up after 0.1 s
        for _ in range(3):
            buffer.put(SimpleNamespace(message=SimpleNamespace(channel=channel)))
        await buffer.flush()
        assert len(channel.published) == 3
        assert buffer.size == 0
    finally:
        await buffer.stop()


async def test_a_flush_does_not_wait_for_records_queued_after_it(app: faust.App) -> None:
    buffer = ProducerBuffer()
    buffer.app = app
    await buffer.start()
    try:
        channel = SlowChannel(delay=0.2)
        buffer.put(SimpleNamespace(message=SimpleNamespace(channel=channel)))
        flushing = asyncio.create_task(buffer.flush())
        await asyncio.sleep(0)
        for _ in range(20):  # an agent keeps writing while the commit flushes
            buffer.put(SimpleNamespace(message=SimpleNamespace(channel=channel)))
        await asyncio.wait_for(flushing, timeout=2.0)  # the 21 records would take 4.2 s
        assert 1 <= len(channel.published) < 21
        channel.delay = 0.0
    finally:
        await buffer.stop()
    assert len(channel.published) == 21  # the rest was handed over when the buffer stopped
