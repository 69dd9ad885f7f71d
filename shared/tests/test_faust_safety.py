"""faust's offset bookkeeping with cxm_shared.faust_safety installed (faust's real consumer and
producer buffer, no broker: offsets are only computed, never sent): an event faust discards
around a rebalance leaves its offset uncommitted, a flush waits for every table write, records
fetched before a seek are not delivered after it, and every stream partition is sought."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka.consumer.fetcher import OffsetResetStrategy
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.structs import ConsumerRecord
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from cxm_shared import faust_safety
from cxm_shared.faust_safety import DISCARDED, STALE_DROPPED, RebalanceSafeEvent
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


# -- records fetched before a seek ------------------------------------------------------------


class Client:
    """The parts of the Kafka client (aiokafka) faust's consumer thread reads, with the
    client's real partition state: a seek there is what bumps the fetch epoch."""

    def __init__(self, *tps: TP) -> None:
        self._subscription = SubscriptionState()
        self._subscription.assign_from_user(set(tps))
        self._closed = False
        self.batches: list[dict[TP, list[ConsumerRecord]]] = []
        self._fetcher = SimpleNamespace(
            _closed=False,
            _subscriptions=self._subscription,
            fetched_records=self._fetched_records,
            _default_reset_strategy=OffsetResetStrategy.EARLIEST,
        )

    def state(self, tp: TP) -> Any:
        return self._subscription.subscription.assignment.state_value(tp)

    async def _fetched_records(self, *_: Any, **__: Any) -> dict[TP, list[ConsumerRecord]]:
        return self.batches.pop(0) if self.batches else {}

    def highwater(self, tp: TP) -> int:
        return 1000


def records(*offsets: int) -> dict[TP, list[ConsumerRecord]]:
    return {tp: [ConsumerRecord(TOPIC, 0, o, 0, 0, b"k", b"v", None, 1, 1, ()) for o in offsets]}


@pytest.fixture
async def client(app: faust.App, monkeypatch: pytest.MonkeyPatch) -> Client:
    """faust's consumer fetching through the real (stamping) ``_fetch_records`` from a fake
    client, in this loop instead of the consumer thread."""
    client = Client(tp)
    consumer = app.consumer
    consumer._thread._consumer = client
    consumer.flow_active = True

    async def wait_next_records(self: Any, timeout: float) -> Any:
        return await consumer._thread._fetch_records(client, {tp}, timeout=timeout), {tp}

    monkeypatch.setattr(faust_safety, "_original_wait_next_records", wait_next_records)
    return client


async def test_a_fetched_batch_carries_the_partition_state_it_was_fetched_under(
    app: faust.App, client: Client
) -> None:
    client.batches.append(records(100, 101))
    batch = await app.consumer._thread._fetch_records(client, {tp}, timeout=0)
    state = client.state(tp)
    assert batch.cxm_epochs == {tp: (state, 0)}
    state.seek(100)
    again = await app.consumer._thread._fetch_records(client, {tp}, timeout=0)
    assert again == {}  # nothing fetched: returned as is


async def test_the_rest_of_a_batch_fetched_before_a_seek_is_dropped(
    app: faust.App, client: Client
) -> None:
    before = STALE_DROPPED.labels(TOPIC)._value.get()
    client.batches.append(records(100, 101, 102))
    seen = []
    async for _, message in app.consumer.getmany(timeout=0):
        seen.append(message.offset)
        client.state(tp).seek(100)  # the seek that ends a rebalance, after the first record
    assert seen == [100]
    assert STALE_DROPPED.labels(TOPIC)._value.get() == before + 2

    client.batches.append(records(100, 101, 102))  # fetched again after the seek
    assert [m.offset async for _, m in app.consumer.getmany(timeout=0)] == [100, 101, 102]


async def test_a_delivery_that_outlives_a_seek_does_not_move_the_read_offset(
    app: faust.App, client: Client
) -> None:
    """The hole itself: faust's own fetch loop (``_drain_messages``) delivers a record whose
    hand-over waits (a full stream queue) until after the seek, then sets the read offset to
    it; the copies fetched again from the committed offset would be dropped as read."""
    consumer = app.consumer
    release, waiting, refetched = asyncio.Event(), asyncio.Event(), asyncio.Event()
    delivered_offsets: list[int] = []

    async def slow_stream_queue(message: Any) -> None:
        delivered_offsets.append(message.offset)
        if len(delivered_offsets) == 10:
            refetched.set()
        if message.offset == 105 and not release.is_set():
            waiting.set()
            await release.wait()

    consumer.callback = faust_safety._guarded(consumer, slow_stream_queue)
    consumer._read_offset[tp] = 99
    client.batches.append(records(104, 105, 106, 107))
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    loop_task = asyncio.create_task(consumer._drain_messages(fetcher))
    try:
        await asyncio.wait_for(waiting.wait(), timeout=5)
        # The seek back to the committed offset 100 and faust's read offset with it
        # (Consumer.perform_seek), while the delivery of 105 waits.
        client.state(tp).seek(100)
        consumer._read_offset.update({tp: 100})
        release.set()
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert delivered_offsets == [104, 105]  # 106 and 107 not delivered
        assert consumer._read_offset[tp] == 100  # faust alone: 107, and 100..107 lost

        client.batches.append(records(100, 101, 102, 103, 104, 105, 106, 107))
        await asyncio.wait_for(refetched.wait(), timeout=5)
        assert delivered_offsets[2:] == list(range(100, 108))
        assert consumer._read_offset[tp] == 107
    finally:
        fetcher._stopped.set()
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task


async def test_other_writes_to_the_read_offset_are_kept(app: faust.App, client: Client) -> None:
    consumer = app.consumer
    consumer._cxm_batch_epochs = {tp: (client.state(tp), 0)}
    client.state(tp).seek(100)  # stale for the fetch loop, not for anyone else
    consumer._read_offset[tp] = 100  # what Consumer.seek does
    assert consumer._read_offset[tp] == 100


# -- every stream partition sought at the end of a rebalance ----------------------------------


async def test_every_stream_partition_is_sought_and_changelogs_left_alone(
    app: faust.App,
) -> None:
    app.Table("totals", default=int, partitions=1)
    changelog = TP(next(iter(app.tables.changelog_topics)), 0)
    at_100, never, at_zero, below_start = (TP(TOPIC, p) for p in (1, 2, 3, 4))
    calls: list[Any] = []

    class Committing(Client):
        async def seek_to_committed(self) -> dict[TP, int | None]:
            # the client's own seek_to_committed seeks only offsets above 0 (at_100, below_start)
            return {at_100: 100, never: None, at_zero: 0, below_start: 5, changelog: None}

        async def beginning_offsets(self, tps: list[TP]) -> dict[TP, int]:
            assert changelog not in tps
            return {tp: 40 if tp == below_start else 0 for tp in tps}

        def seek(self, tp: TP, offset: int) -> None:
            calls.append((tp, offset))

    thread = app.consumer._thread
    thread._consumer = Committing()
    committed = await faust_safety._seek_all_in_thread(thread)
    assert committed[at_100] == 100 and committed[never] is None  # faust's view unchanged
    assert sorted(calls) == [(never, 0), (at_zero, 0), (below_start, 40)]
    assert thread._cxm_bases == {at_100: 100, never: 0, at_zero: 0, below_start: 40}


# -- a commit starts at the committed offset --------------------------------------------------


def acked(app: faust.App, *offsets: int) -> None:
    for offset in offsets:
        event = delivered(app, offset)
        processed(app, event)
        event.ack()


async def test_no_commit_past_an_unprocessed_offset_just_after_the_committed_one(
    app: faust.App,
) -> None:
    acked(app, 101, 102)  # 100, the next to read, not processed (faust alone: commits 103)
    assert app.consumer._new_offset(tp) is None
    acked(app, 100)
    assert app.consumer._new_offset(tp) == 103


async def test_a_partition_never_committed_commits_from_where_it_was_sought(
    app: faust.App,
) -> None:
    app.consumer._committed_offset[tp] = None
    acked(app, 3, 4)
    assert app.consumer._new_offset(tp) is None  # not sought yet: where it starts is unknown
    app.consumer._cxm_base[tp] = 0
    assert app.consumer._new_offset(tp) is None  # 0..2 not processed (faust alone: 5)
    acked(app, 0, 1, 2)
    assert app.consumer._new_offset(tp) == 5


async def test_offsets_known_absent_count_as_done(app: faust.App) -> None:
    acked(app, 100)
    await app.consumer._add_gap(tp, 101, 102)  # what the fetch loop records for a jump
    acked(app, 103)
    assert app.consumer._new_offset(tp) == 104
    app.consumer._committed_offset[tp] = 104
    app.consumer._gap[tp].addi(104, 106)  # absent right at the committed offset
    acked(app, 106)
    assert app.consumer._new_offset(tp) == 107


async def test_offsets_before_the_first_delivered_after_the_seek_do_not_exist(
    app: faust.App,
) -> None:
    acked(app, 102)
    assert app.consumer._new_offset(tp) is None
    app.consumer._cxm_first[tp] = 102  # fetched from 100 in order: 100 and 101 absent
    assert app.consumer._new_offset(tp) == 103


async def test_deliveries_wait_from_the_seek_until_flow_control_resumes(
    app: faust.App, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = app.consumer
    delivered_offsets: list[int] = []

    async def stream_queue(message: Any) -> None:
        delivered_offsets.append(message.offset)

    async def seek(self: Any) -> None:
        client.state(tp).seek(100)

    monkeypatch.setattr(faust_safety, "_original_perform_seek", seek)
    deliver = faust_safety._guarded(consumer, stream_queue)
    await consumer.perform_seek()
    consumer._cxm_batch_epochs = {tp: (client.state(tp), 1)}  # fetched after the seek
    held = asyncio.create_task(deliver(delivered(app, 100).message))
    await asyncio.sleep(0.05)
    assert delivered_offsets == []  # faust's clear of the stream queues is still to come
    app.flow_control.resume()
    await asyncio.wait_for(held, timeout=1)
    assert delivered_offsets == [100]
    assert consumer._cxm_first == {tp: 100}


async def test_offsets_processed_again_below_the_commit_are_dropped(app: faust.App) -> None:
    app.consumer._committed_offset[tp] = None
    app.consumer._cxm_base[tp] = 95
    acked(app, 95, 96)
    app.consumer._committed_offset[tp] = 100  # committed meanwhile (another path)
    acked(app, 100)
    assert app.consumer._new_offset(tp) == 101
