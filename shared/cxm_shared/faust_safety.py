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

Not fixed here (see issue 8): at the end of a rebalance's recovery faust resumes the stream
partitions, *then* seeks them to the committed offsets, with flow already active, and records
fetched during the seek were seen dropped when flow control resumed; and a new owner was seen
reading partitions from the end of the log. Holding the partitions paused until the seek was
done (tried) made a restarted worker stop consuming altogether, so it is not installed.

Both are installed by :func:`cxm_shared.streaming.make_faust_app`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
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
