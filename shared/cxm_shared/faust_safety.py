"""Where faust-streaming (0.15.3) loses events under at-least-once, and what this project
does about it. All were found by the two-worker scale-out test and the chaos run
(issues 8 and 9): a customer's score missing touchpoints, or a merge never applied, after a
worker was killed or the group rebalanced.

1. **Table writes not yet sent when the offset is committed.** A table assignment queues its
   changelog record in the producer's buffer; before committing offsets faust calls
   ``producer.flush()``, whose ``ProducerBuffer.flush`` *gives up after 0.1 s* without a send
   (``flush_atmost``: ``wait_for(message_sent.wait(), timeout=0.1)`` then ``return``). On a
   busy machine the commit then goes out while changelog records are still queued; a kill
   loses them, and the next owner restores the older state and starts past the events that
   made the newer one. :func:`install_durable_flush` makes that flush wait until every record
   queued before it was handed to the Kafka client (whose own flush, which faust calls next,
   waits for the broker's acknowledgements).

2. **Events discarded around a rebalance are acknowledged.** faust drops an event its stream
   dequeues while a rebalance is under way (flow control suspended) or that was fetched under
   an older consumer generation, and then *acknowledges* it as if the agent had processed it
   (``Stream._py_aiter``: ``value = skipped_value`` ... ``event.ack()``), which makes its
   offset committable: during the revocation ``Consumer.wait_empty`` commits while the agents
   finish their batches, and after the rebalance a commit can land before the copy fetched
   again after the seek is processed. :class:`RebalanceSafeEvent` (the apps' ``Event`` class)
   lets such an event go without making its offset committable: the commit stops before it,
   and the seek to the committed offset that ends every rebalance fetches it again, now for an
   agent to process. The test for "discarded" is faust's own: a message a stream hands to an
   agent is *tracked* (``message.tracked``) before the agent sees it; one it discards never
   is. Agents here read each topic with one stream, so the test is exact; where several
   streams share a topic, a message one stream tracked and another discarded is still
   committed (documented limit, not the case in this project).

3. **Records fetched before the seek that ends a rebalance are delivered after it.** faust
   resumes the stream partitions, with flow already active, *before* seeking them to the
   committed offsets; a record whose delivery waits across the seek moves faust's read
   offset past the records the seek fetches again, and they are dropped as already read.
   :func:`install_seek_safety` drops what was fetched before a partition's latest seek.

4. **A partition never committed is not sought.** Records fetched for it before flow
   control cleared the stream queues are never fetched again (a new owner seemed to start
   at the end of the log). :func:`install_seek_safety` resets such partitions by the reset
   policy along with the seek of the others.

All four are installed by :func:`cxm_shared.streaming.make_faust_app`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import defaultdict
from typing import Any

import faust
from aiokafka.consumer.fetcher import OffsetResetStrategy
from aiokafka.consumer.subscription_state import TopicPartitionState
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import ack_lock
from prometheus_client import Counter

log = logging.getLogger(__name__)

DISCARDED = Counter(
    "cxm_stream_rebalance_discarded_total",
    "Events faust discarded around a rebalance without processing them; their offsets are "
    "not committed, so they are fetched again after the rebalance.",
    ["topic"],
)


# -- 2. discarded is not done -----------------------------------------------------------------


class RebalanceSafeEvent(faust.Event):
    def ack(self) -> bool:
        message = self.message
        if message.use_tracking and not message.tracked:
            # Never handed to an agent: faust is discarding it (see the module docstring).
            message.cxm_discarded = True  # type: ignore[attr-defined]
        if getattr(message, "cxm_discarded", False):
            return _release(message, self.app.consumer)
        return super().ack()


def _release(message: faust.types.Message, consumer: faust.types.ConsumerT) -> bool:
    """Drop one stream's reference to ``message``; at the last, mark it done for faust's
    bookkeeping (nothing waits for it) without adding its offset to the committable ones."""
    with ack_lock:
        if message.acked or message.decref():
            return False
        message.acked = True
    unacked = getattr(consumer, "_unacked_messages", None)
    if unacked is not None:
        unacked.discard(message)
    DISCARDED.labels(message.topic).inc()
    log.info(
        "event discarded by faust around a rebalance, fetched again after it: "
        "topic=%s partition=%d offset=%d",
        message.topic,
        message.partition,
        message.offset,
    )
    return False


# -- 1. flush means flushed ------------------------------------------------------------------

FLUSH_WAIT_S = 0.5  # how long one wait for a send lasts before the counts are looked at again
FLUSH_WARN_S = 30.0  # a flush still waiting after this long is logged (broker unreachable?)
STOP_FLUSH_S = 10.0  # at most this long for the last records when the producer stops

_original_put = ProducerBuffer.put
_original_flush = ProducerBuffer.flush


def _put_counted(self: Any, fut: Any) -> None:
    _original_put(self, fut)
    self._cxm_queued = getattr(self, "_cxm_queued", 0) + 1


async def _send_pending_counted(self: Any, fut: Any) -> None:
    try:
        await fut.message.channel.publish_message(fut, wait=False)
    except asyncio.CancelledError:
        raise  # not handed over (the buffer is being stopped)
    except BaseException:
        _count_handed(self)  # failed: the send's future carries the error, the app crashes
        raise
    # Counted once the record is in the Kafka client: between faust's queue and the client
    # it is in neither, and a flush must wait for it.
    _count_handed(self)


def _count_handed(buffer: Any) -> None:
    buffer._cxm_handed = getattr(buffer, "_cxm_handed", 0) + 1


async def _flush_what_was_queued(self: Any) -> None:
    """Wait until every record queued before this call is handed to the Kafka client.

    No give-up timeout, and not "until the buffer is empty": agents keep queueing table
    writes while a commit flushes, and a commit must not starve behind them. The queue is
    first in, first out, so the records queued before the call are the first ``target``."""
    if _threaded(self):
        await _original_flush(self)
        return
    target = getattr(self, "_cxm_queued", 0)
    loop = asyncio.get_running_loop()
    started = warned = loop.time()
    while getattr(self, "_cxm_handed", 0) < target:
        if self.state != "running":
            # Stopping: the background sender finishes the record it holds and takes no
            # more; hand the rest over here (faust's own flush raises and drops them).
            while not self.pending.empty():
                await self._send_pending(self.pending.get_nowait())
            if loop.time() - started > STOP_FLUSH_S:
                left = target - getattr(self, "_cxm_handed", 0)
                log.warning("producer stopped with %d records not handed over", left)
                return
            await asyncio.sleep(0.01)
            continue
        self.message_sent.clear()
        try:
            await asyncio.wait_for(self.message_sent.wait(), timeout=FLUSH_WAIT_S)
        except TimeoutError:
            if loop.time() - warned >= FLUSH_WARN_S:
                warned = loop.time()
                log.warning(
                    "producer flush still waiting after %.0fs: %d records to hand over",
                    warned - started,
                    target - getattr(self, "_cxm_handed", 0),
                )


def _threaded(buffer: Any) -> bool:
    """faust's threaded producer has a queue of its own that these counts do not see."""
    app = getattr(buffer, "app", None)
    return bool(app is not None and app.conf.producer_threaded)


def install_durable_flush() -> None:
    """Patch faust's ``ProducerBuffer`` (every app in the process; idempotent)."""
    ProducerBuffer.put = _put_counted  # type: ignore[method-assign]
    ProducerBuffer._send_pending = _send_pending_counted  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush_what_was_queued  # type: ignore[method-assign]


# -- 3. a record fetched before a seek is not delivered after it -------------------------------
#
# At the end of a rebalance's recovery faust resumes the stream partitions with flow already
# active (it was resumed to read the changelogs), *then* seeks them to the committed offsets
# (``Recovery.on_recovery_completed``: ``resume_partitions`` ... ``perform_seek``). Records
# fetched in between are delivered; one whose delivery waits (full stream queue, flow control)
# until after the seek then sets faust's read offset past the committed one
# (``_drain_messages``: ``set_read_offset(tp, offset)``), the rest of its batch follows, and
# the copies fetched again from the committed offset are dropped as already read: never
# processed, and the commit stalls before them. Seen in the scale-out test as 18 consecutive
# offsets never scored.
#
# The Kafka client runs in faust's consumer thread; a fetch and a seek there happen in a clear
# order. Every seek (and reset) of a partition bumps a counter on the client's state for that
# partition; each fetched batch carries the counters as they were when it was fetched; the
# main loop then drops, for a partition whose counter (or state: a new assignment) has changed
# since, the batch's records, their delivery and their read offset. The client, positioned by
# the seek, fetches them again.

STALE_DROPPED = Counter(
    "cxm_stream_stale_records_dropped_total",
    "Records fetched before their partition was sought again (rebalance) and dropped instead "
    "of delivered; the seek fetches them again.",
    ["topic"],
)

_EPOCH = "_cxm_seek_epoch"


def _bumping(method: Any) -> Any:
    def bumped(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        setattr(self, _EPOCH, getattr(self, _EPOCH, 0) + 1)
        return result

    bumped._cxm_original = method  # type: ignore[attr-defined]
    return bumped


def _client_state(client: Any, tp: Any) -> Any:
    """The Kafka client's state of ``tp`` in its current assignment, or None."""
    subscription = getattr(getattr(client, "_subscription", None), "subscription", None)
    assignment = getattr(subscription, "assignment", None)
    return assignment.state_value(tp) if assignment is not None else None


class _Fetched(dict):  # type: ignore[type-arg]
    """A fetched batch with, per partition, the client's state and seek counter at fetch."""

    cxm_epochs: dict[Any, tuple[Any, int]]


async def _fetch_records_stamped(self: Any, consumer: Any, *args: Any, **kwargs: Any) -> Any:
    records = await _original_fetch_records(self, consumer, *args, **kwargs)
    if not records:
        return records
    stamped = _Fetched(records)
    epochs = {}
    for tp in records:
        state = _client_state(consumer, tp)
        epochs[tp] = (state, getattr(state, _EPOCH, 0))
    stamped.cxm_epochs = epochs  # taken in the consumer thread, before any later seek
    return stamped


def _stale(consumer: Any, tp: Any) -> bool:
    """Was ``tp`` sought (or reassigned) since the batch being delivered was fetched?"""
    epochs = getattr(consumer, "_cxm_batch_epochs", None)
    if not epochs or tp not in epochs:
        return False
    state, epoch = epochs[tp]
    thread = getattr(consumer, "_thread", None)
    client = getattr(thread, "_consumer", None)
    if client is None:
        return False
    current = _client_state(client, tp)
    return current is not state or getattr(current, _EPOCH, 0) != epoch


def _drop(tp: Any, what: str, offset: int) -> None:
    STALE_DROPPED.labels(tp.topic).inc()
    log.info(
        "record fetched before a seek dropped (%s), fetched again: topic=%s partition=%d offset=%d",
        what,
        tp.topic,
        tp.partition,
        offset,
    )


async def _wait_next_records_stamped(self: Any, timeout: float) -> Any:
    records, active = await _original_wait_next_records(self, timeout)
    self._cxm_batch_epochs = getattr(records, "cxm_epochs", None)
    return records, active


async def _getmany_fresh(self: Any, timeout: float) -> Any:
    async for tp, message in _original_getmany(self, timeout):
        if _stale(self, tp):
            _drop(tp, "fetch", message.offset)
            continue
        yield tp, message


class _ReadOffsets(defaultdict):  # type: ignore[type-arg]
    """faust's read offsets; the fetch loop's write for a stale record is ignored."""

    def __init__(self, consumer: Any) -> None:
        super().__init__(_none)
        self._cxm_consumer = consumer

    def __setitem__(self, tp: Any, offset: Any) -> None:
        if sys._getframe(1).f_code is _DRAIN_CODE and _stale(self._cxm_consumer, tp):
            return  # the record's delivery outlived a seek: it is fetched again
        super().__setitem__(tp, offset)


def _none() -> None:
    return None


GATE_WARN_S = 60.0  # a delivery held this long at the end of a rebalance is let through


def _guarded(consumer: Any, callback: Any) -> Any:
    async def deliver(message: Any) -> Any:
        gate = consumer._cxm_gate
        if not gate.is_set():  # a rebalance's seek under way: see _perform_seek_with_bases
            try:
                await asyncio.wait_for(gate.wait(), timeout=GATE_WARN_S)
            except TimeoutError:
                log.warning("stream flow not resumed %.0fs after the seek", GATE_WARN_S)
        tp = message.tp
        if _stale(consumer, tp):  # sought while this waited (or the fetch loop committed)
            _drop(tp, "delivery", message.offset)
            return None
        consumer._cxm_first.setdefault(tp, message.offset)
        return await callback(message)

    deliver._cxm_guarded = True  # type: ignore[attr-defined]
    return deliver


def _consumer_init_guarded(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_consumer_init(self, *args, **kwargs)
    self._read_offset = _ReadOffsets(self)
    self._cxm_base = {}  # per partition: where the last seek positioned it (section 5)
    self._cxm_first = {}  # per partition: the first offset delivered since then
    self._cxm_gate = asyncio.Event()  # closed from a rebalance's seek until flow resumes
    self._cxm_gate.set()
    if not getattr(self.callback, "_cxm_guarded", False):
        self.callback = _guarded(self, self.callback)


# -- 4. every stream partition is sought at the end of a rebalance -----------------------------
#
# ``perform_seek`` relies on the client's ``seek_to_committed``, which seeks only partitions
# with a committed offset above 0. A partition the group never committed (or committed at 0)
# keeps the position it had fetched to, and what was fetched there before flow control
# cleared the stream queues is never fetched again: a new owner seemed to start at the end of
# the log. Those partitions are now reset by the consumer's reset policy (``earliest`` here),
# in the consumer thread right after the others are sought. Changelog partitions are left to
# the table recovery, which positions them itself.


async def _seek_to_committed_all(self: Any) -> Any:
    return await self.call_thread(_seek_all_in_thread, self)


async def _seek_all_in_thread(thread: Any) -> Any:
    client = thread._ensure_consumer()
    committed = await client.seek_to_committed()
    tables = getattr(getattr(thread.consumer, "app", None), "tables", None)
    changelogs = set(getattr(tables, "changelog_topics", ()) or ())
    streams = [tp for tp in committed if tp.topic not in changelogs]
    bases: dict[Any, int] = {}
    try:
        if streams:
            bases = await _position_streams(client, committed, streams)
    except Exception as exc:  # a failed offsets request must not fail the rebalance
        log.warning("could not position the stream partitions from the log start: %r", exc)
        bases = {tp: committed[tp] for tp in streams if committed[tp]}
    thread._cxm_bases = bases  # read by the main loop once this call returns
    return committed


async def _position_streams(client: Any, committed: Any, streams: list[Any]) -> dict[Any, int]:
    """Seek every stream partition the client's ``seek_to_committed`` left where it was;
    return where each now starts (the base of the next commit)."""
    beginnings = await client.beginning_offsets(streams)
    strategy = client._fetcher._default_reset_strategy
    never = [tp for tp in streams if committed[tp] is None]
    ends = {}
    if never and strategy == OffsetResetStrategy.LATEST:
        ends = await client.end_offsets(never)
    bases = {}
    for tp in streams:
        offset = committed[tp]
        if offset is not None:
            target = max(offset, beginnings[tp])  # below the log start: retention removed it
        elif strategy == OffsetResetStrategy.EARLIEST:
            target = beginnings[tp]
        elif strategy == OffsetResetStrategy.LATEST:
            target = ends[tp]
        else:
            continue  # reset policy "none": the client raises on its own
        if not offset or target != offset:  # the client's seek_to_committed skipped it
            client.seek(tp, target)
        bases[tp] = target
    return bases


# -- 5. a commit starts at the committed offset ------------------------------------------------
#
# faust commits the first run of consecutive acknowledged offsets (``Consumer._new_offset``),
# checking only that the run starts at most one past the committed offset, which is the next
# offset to read: with offset C unprocessed (discarded around a rebalance, fetched again) and
# C+1 processed, it commits C+2 and C is lost at the next crash. With no committed offset (a
# partition the group never committed, or between a revocation and the seek that ends the
# next assignment) it commits any run. Here a run is committed only when it starts at the
# *base*, the offset the last seek positioned the partition at (or the last commit since);
# offsets faust knows are absent (its gap tree) count as done.


def _base(consumer: Any, tp: Any) -> int | None:
    known = [consumer._committed_offset[tp], consumer._cxm_base.get(tp)]
    values = [v for v in known if v is not None]
    if not values:
        return None
    base = max(values)
    first = consumer._cxm_first.get(tp)
    # The client fetches from where it was sought, in order: a first delivery beyond that
    # means the offsets before it do not exist (a transaction marker, compaction); faust's
    # gap tree does not record one missing right at the committed offset.
    return first if first is not None and first > base else base


def _new_offset_from_base(self: Any, tp: Any) -> int | None:
    acked = self._acked[tp]
    if not acked:
        return None
    base = _base(self, tp)
    if base is None:
        return None  # where the partition starts is not known yet (mid-rebalance)
    if min(acked) < base:  # processed again after the seek, committed already
        done = [o for o in acked if o < base]
        acked[:] = [o for o in acked if o >= base]
        self._acked_index[tp].difference_update(done)
        if not acked:
            return None
    head = min(acked)
    if head > base and not _absent(self._gap.get(tp), base, head):
        return None  # offset ``base`` not processed yet
    committed = self._committed_offset[tp]
    if committed is not None and committed < base:
        # Nothing below the base exists or is left to do; faust's own check (a run may
        # start at most one past the committed offset) must see the same.
        self._committed_offset[tp] = base
    return _original_new_offset(self, tp)


def _absent(gaps: Any, start: int, end: int) -> bool:
    """Whether faust's gap tree covers every offset in [start, end)."""
    if not gaps:
        return False
    covered = 0
    position = start
    for interval in sorted(gaps.overlap(start, end), key=lambda i: i.begin):
        if interval.begin > position:
            return False
        position = max(position, min(interval.end, end))
        covered = position - start
    return covered >= end - start


async def _perform_seek_with_bases(self: Any) -> None:
    """The seek that ends a rebalance, with deliveries held until the stream queues are
    cleared: faust clears them when it resumes flow control right after this
    (``Recovery.on_recovery_completed``), and a record fetched after the seek and put in a
    queue before that clear was lost (its read offset recorded, the record never fetched
    again). Held, it is delivered into the cleared queue."""
    _hold_deliveries_until_flow_resumes(self)
    await _original_perform_seek(self)
    thread = getattr(self, "_thread", None)
    bases = getattr(thread, "_cxm_bases", None)
    if bases is not None:
        self._cxm_base = dict(bases)  # every assigned partition was just sought
    self._cxm_first = {}


def _hold_deliveries_until_flow_resumes(consumer: Any) -> None:
    flow_control = consumer.app.flow_control
    if not getattr(flow_control, "_cxm_opens_gate", False):
        resume = flow_control.resume

        def resume_and_open() -> None:
            resume()  # clears the stream queues
            consumer._cxm_gate.set()

        flow_control.resume = resume_and_open
        flow_control._cxm_opens_gate = True
    consumer._cxm_gate.clear()


async def _revoked_clears_bases(self: Any, revoked: Any) -> None:
    try:
        await _original_on_partitions_revoked(self, revoked)
    finally:
        for tp in revoked:
            self._cxm_base.pop(tp, None)
            self._cxm_first.pop(tp, None)


_original_fetch_records = AIOKafkaConsumerThread._fetch_records
_original_wait_next_records = FaustConsumer._wait_next_records
_original_getmany = FaustConsumer.getmany
_original_consumer_init = FaustConsumer.__init__
_DRAIN_CODE = FaustConsumer._drain_messages.__code__
_original_new_offset = FaustConsumer._new_offset
_original_perform_seek = FaustConsumer.perform_seek
_original_on_partitions_revoked = FaustConsumer.on_partitions_revoked


def install_seek_safety() -> None:
    """Patch faust's consumer and the Kafka client's partition state (idempotent)."""
    if getattr(TopicPartitionState.seek, "_cxm_original", None) is None:
        TopicPartitionState.seek = _bumping(TopicPartitionState.seek)  # type: ignore[method-assign]
        TopicPartitionState.await_reset = _bumping(  # type: ignore[method-assign]
            TopicPartitionState.await_reset
        )
    AIOKafkaConsumerThread._fetch_records = _fetch_records_stamped  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_all  # type: ignore[method-assign]
    FaustConsumer._wait_next_records = _wait_next_records_stamped  # type: ignore[method-assign]
    FaustConsumer.getmany = _getmany_fresh  # type: ignore[method-assign]
    FaustConsumer.__init__ = _consumer_init_guarded  # type: ignore[method-assign]
    FaustConsumer._new_offset = _new_offset_from_base  # type: ignore[method-assign]
    FaustConsumer.perform_seek = _perform_seek_with_bases  # type: ignore[method-assign]
    FaustConsumer.on_partitions_revoked = _revoked_clears_bases  # type: ignore[method-assign]
