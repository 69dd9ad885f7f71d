"""The scoring service's faust app: one experience state per customer.

Topics and agents:

- ``score_experience`` (resolved touchpoints, key = customer id): applies each touchpoint to
  ``experience_by_customer[customer]``, publishes the ScoreSnapshot (compacted scores topic)
  and the signals it raised.
- ``follow_identity_changes`` / ``follow_erasures``: re-key merges, unmerges and erasures onto
  the internal hand-off topic, so that each step runs on the partition that owns the key.
- ``hand_over`` (internal ``<app id>-handoff``, co-partitioned with the resolved topic):
  ``export`` on the loser's partition takes its state out (leaving a tombstone that remembers
  it), ``import`` on the winner's partition combines it; ``forward`` carries a touchpoint that
  still arrived for a merged-away customer to the winner (not one the loser had applied: that
  one is in the exported state already); ``erase`` deletes state and writes a
  tombstone on the scores topic; ``unmerge`` restores the loser's state as it was at the merge
  (documented limit: what the loser did while merged stays with the winner, aggregates cannot
  be split back).
- a timer publishing per-partition base statistics, and a reader of those, for decile and RFM
  cut points against the whole base (see ``cxm_scoring.experience.base``); the same pass
  recounts customers per segment for ``cxm_scoring_customers``.

Poison messages (undecodable, invalid scores or amounts) go to ``<topic>.dlq``; anything else
raised crashes the worker so Kafka redelivers (idempotency makes the redelivery harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.streams import _current_event
from pydantic import ValidationError

from cxm_scoring import metrics
from cxm_scoring.config import ScoringSettings
from cxm_scoring.domain.errors import ScoringDomainError
from cxm_scoring.experience.base import partition_histogram, recompute_cuts
from cxm_scoring.experience.model_config import load_bgnbd, load_segment_rules
from cxm_scoring.experience.models import ExperienceState, Tombstone, load_entry
from cxm_scoring.experience.service import (
    Applied,
    ReadOut,
    ScoringModel,
    apply_touchpoint,
    base_row,
    merge_states,
    score_snapshot,
    source_key,
)
from cxm_scoring.insights.agents import InsightsTracker, register_insights
from cxm_scoring.partition_values import follow_partition_values
from cxm_shared.dlq import dead_letter
from cxm_shared.events import CustomerErased, IdentityChange, ResolvedTouchpoint
from cxm_shared.streaming import make_faust_app
from cxm_shared.topics import Topics

log = logging.getLogger(__name__)

PRODUCER_BATCH_BYTES = 512 * 1024
POISON = (ValidationError, ScoringDomainError, orjson.JSONDecodeError, KeyError, TypeError)


def app_id(settings: ScoringSettings) -> str:
    return f"{settings.topic_prefix}cxm-scoring"


def handoff_topic_name(settings: ScoringSettings) -> str:
    return f"{app_id(settings)}-handoff"


def base_stats_topic_name(settings: ScoringSettings) -> str:
    return f"{app_id(settings)}-base-stats"


class Scorer:
    """The agents' shared context: the table, output topics, the model and metrics."""

    insights: InsightsTracker | None = None  # CX insights, set by create_faust_app

    def __init__(self, app: faust.App, settings: ScoringSettings) -> None:
        self.app = app
        self.settings = settings
        self.topics = Topics(prefix=settings.topic_prefix)
        self.model = ScoringModel(
            bgnbd=load_bgnbd(settings.churn_model_path),
            rules=load_segment_rules(settings.segments_path),
            churn_high=settings.churn_high_threshold,
            churn_rising_delta=settings.churn_rising_delta,
        )
        self.rolling = metrics.RollingSurveyAggregates()
        self.segment_counts = metrics.SegmentCounts()
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        n = settings.topic_partitions
        self.resolved = app.topic(self.topics.touchpoints_resolved, **raw)
        self.merges = app.topic(self.topics.identity_merges, **raw)
        self.erasures = app.topic(self.topics.erasures, **raw)
        self.scores = app.topic(self.topics.scores, **raw)
        self.signals = app.topic(self.topics.signals, **raw)
        self.handoff = app.topic(handoff_topic_name(settings), partitions=n, internal=True, **raw)
        self.base_stats = app.topic(
            base_stats_topic_name(settings),
            partitions=1,
            internal=True,
            config={"cleanup.policy": "compact"},
            **raw,
        )
        self.table = app.Table(
            "experience_by_customer",
            default=None,
            partitions=n,
            schema=faust.Schema(key_serializer="raw", value_serializer="raw"),
            key_type=bytes,
            value_type=bytes,
        )
        self.base_by_partition: dict[int, dict[str, Any]] = {}
        self._scores_name = self.scores.get_topic_name()
        self._signals_name = self.signals.get_topic_name()
        # customer key -> (bytes last written to the table, the state they encode)
        self._states: dict[bytes, tuple[bytes, ExperienceState]] = {}
        self._handoff_name = self.handoff.get_topic_name()
        # What one unit of work (a batch of touchpoints, a hand-off operation) produced; the
        # state that records it is written only once the broker acknowledged all of it.
        self._outputs: list[Awaitable[Any]] = []
        # One unit of work at a time across the agents: each reads a state, waits for its
        # outputs, then writes the state, and must not interleave with another on that key.
        self._unit = asyncio.Lock()

    # -- table access -------------------------------------------------------------------

    def load(self, key: bytes) -> ExperienceState | Tombstone | None:
        """The entry under ``key``, decoded afresh from the table (safe to mutate)."""
        raw = self.table.get(key)
        return None if raw is None else load_entry(orjson.loads(raw))

    def load_cached(self, key: bytes) -> ExperienceState | Tombstone | None:
        """Like ``load``, but reuses the decoded state this process last wrote when the table
        still holds exactly those bytes (the table stays the truth: a recovery, a rebalance or
        any other writer changes the bytes and the cached object is ignored)."""
        raw = self.table.get(key)
        if raw is None:
            return None
        cached = self._states.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        return load_entry(orjson.loads(raw))

    def save(self, key: bytes, entry: ExperienceState | Tombstone) -> None:
        # Reassigned (never mutated in place) so the changelog sees every change.
        self.table[key] = orjson.dumps(entry.to_dict())
        self._states.pop(key, None)

    def save_cached(self, key: bytes, state: ExperienceState) -> None:
        """``save``, keeping the decoded state for the next batch (the caller hands it over:
        it is not mutated again unless reloaded through ``load_cached``)."""
        raw = orjson.dumps(state.to_dict())
        self.table[key] = raw
        states = self._states
        states.pop(key, None)
        if self.settings.state_cache_size:
            states[key] = (raw, state)
            if len(states) > self.settings.state_cache_size:
                del states[next(iter(states))]  # the least recently written

    # -- outputs --------------------------------------------------------------------------

    async def publish_snapshot(self, state: ExperienceState, view: ReadOut | None = None) -> None:
        snapshot = score_snapshot(state, model=self.model, view=view)
        snapshot["updated_at"] = _iso(snapshot["updated_at"])
        await self._send(self._scores_name, state.customer_id.encode(), orjson.dumps(snapshot))

    async def publish_signals(self, customer_id: str, signals: list[dict[str, Any]]) -> None:
        for sig in signals:
            sig["occurred_at"] = _iso(sig["occurred_at"])
            sig["schema_version"] = 1
            await self._send(self._signals_name, customer_id.encode(), orjson.dumps(sig))
            metrics.SIGNALS.labels(sig["kind"]).inc()

    async def _send(self, topic: str, key: bytes, value: bytes | None) -> None:
        # Straight to faust's producer (the one flushed before every offset commit), without
        # the per-message machinery of Topic.send: outputs are already bytes.
        self._outputs.append(await self.app.producer.send(topic, key, value, None, None, None))

    async def _acknowledged(self) -> None:
        """Wait until the broker acknowledged every output of this unit of work (raising if
        one failed: the worker stops and the input is redelivered).

        Outputs before state: the table (its changelog) is what tells a redelivered event
        from a new one, so it must never record an event whose snapshot or signals a crash
        could still lose. Written after its outputs, a state that survives a kill implies
        they were delivered; a kill before the state is written redelivers the input, which
        re-publishes the same snapshot and signals (same ids: consumers drop the repeat)."""
        outputs, self._outputs = self._outputs, []
        if outputs:
            await self.app.producer.flush()
            await asyncio.gather(*outputs)

    async def dead_letter(self, event: faust.EventT, error: BaseException) -> None:
        msg = event.message
        metrics.DEAD_LETTERS.labels(_topic_label(msg.topic, self.settings)).inc()
        log.warning(
            "dead-lettered topic=%s partition=%d offset=%d reason=%s",
            msg.topic,
            msg.partition,
            msg.offset,
            type(error).__name__,
        )
        await dead_letter(
            _FaustProducerAdapter(self.app.producer),  # type: ignore[arg-type]
            source_topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            error=error,
            service="scoring",
        )

    # -- touchpoints ------------------------------------------------------------------------

    async def on_batch(self, events: Sequence[faust.EventT]) -> None:
        """Score one batch of resolved touchpoints: per customer, in offset order, load the
        state once, apply every event, publish the snapshot (latest) and the signals once,
        write the table once. Offsets are acknowledged by the caller after this returns."""
        groups: dict[str, list[tuple[faust.EventT, ResolvedTouchpoint]]] = {}
        for event in events:
            try:
                touchpoint = ResolvedTouchpoint.model_validate_json(event.message.value)
            except POISON as exc:
                await self.dead_letter(event, exc)
                continue
            groups.setdefault(touchpoint.customer_id, []).append((event, touchpoint))
        async with self._unit:
            pending: list[_Pending] = []
            try:
                for customer_id, items in groups.items():
                    scored = await self.score_customer(customer_id, items, kind="r")
                    if scored is not None:
                        pending.append(scored)
                await self._acknowledged()
            except BaseException:
                self._outputs.clear()
                for p in pending:
                    self._states.pop(p.key, None)  # the cached objects were updated in place
                raise
            for p in pending:
                self.save_scored(p)
            if self.insights is not None:
                self.insights.on_batch(self, groups)
        now = time.time()
        for event in events:
            metrics.PROCESSING_LAG.observe(max(0.0, now - event.message.timestamp))
        for items in groups.values():
            for _, touchpoint in items:
                accepted = touchpoint.received_at.timestamp()
                metrics.END_TO_END.observe(max(0.0, now - accepted))

    async def score_customer(
        self,
        customer_id: str,
        items: list[tuple[faust.EventT, ResolvedTouchpoint]],
        *,
        kind: str,
    ) -> _Pending | None:
        """Apply ``items`` (events of one customer, one partition, offset order) and send the
        snapshot and signals; the new state is returned for ``save_scored`` to write once the
        outputs are acknowledged (None: nothing to write)."""
        key = customer_id.encode()
        try:
            entry = self.load_cached(key)
            if isinstance(entry, Tombstone):
                for _, touchpoint in items:
                    await self._skip_tombstoned(entry, touchpoint)
                return None
            before = list(entry.segments) if entry is not None else []
            state, outcomes = await self._apply_all(customer_id, entry, items, kind=kind)
            if not outcomes:
                return None
            state.partition = items[-1][0].message.partition
            await self.publish_snapshot(state, outcomes[-1][1].view)
            for _, done in outcomes:
                await self.publish_signals(customer_id, done.signals)
        except BaseException:
            self._states.pop(key, None)  # the cached object may be half updated
            raise
        return _Pending(key, state, items[-1][0], before, outcomes)

    def save_scored(self, p: _Pending) -> None:
        # Table writes go to the partition of the current event: make it this customer's.
        token = _current_event.set(weakref.ref(p.event))
        try:
            self.save_cached(p.key, p.state)
        finally:
            _current_event.reset(token)
        self._count(p.state, p.outcomes)
        self.segment_counts.change(p.before, p.state.segments)

    def _count(
        self, state: ExperienceState, outcomes: list[tuple[ResolvedTouchpoint, Applied]]
    ) -> None:
        scored: Counter[str] = Counter()
        sentiments: Counter[tuple[str, str]] = Counter()
        for touchpoint, applied in outcomes:
            scored[metrics.type_label(touchpoint.type)] += 1
            if applied.reordered:
                metrics.EVENTS_REORDERED.inc()
            if applied.churn_risk is not None:
                metrics.CHURN_RISK.observe(applied.churn_risk)
            if applied.survey is not None:
                self._roll(touchpoint, state, applied.survey)
            if applied.sentiment is not None:
                language, label = applied.sentiment.language, applied.sentiment.label
                sentiments[language.value, label.value] += 1
        for label, n in scored.items():
            metrics.EVENTS_SCORED.labels(label).inc(n)
        for (language, label), n in sentiments.items():
            metrics.FEEDBACK_SENTIMENT.labels(language, label).inc(n)

    async def _apply_all(
        self,
        customer_id: str,
        entry: ExperienceState | None,
        items: list[tuple[faust.EventT, ResolvedTouchpoint]],
        *,
        kind: str,
    ) -> tuple[ExperienceState, list[tuple[ResolvedTouchpoint, Applied]]]:
        """Apply every item; a poison item is dead-lettered and the customer's batch redone
        from the stored state without it (nothing of a poison event is left behind)."""
        poison: set[int] = set()
        while True:
            state = entry or ExperienceState(customer_id=customer_id)
            outcomes: list[tuple[ResolvedTouchpoint, Applied]] = []
            duplicates = 0
            i = 0
            try:
                for i, (event, touchpoint) in enumerate(items):
                    if i in poison:
                        continue
                    msg = event.message
                    applied = apply_touchpoint(
                        state,
                        event=touchpoint,
                        model=self.model,
                        source=source_key(kind, msg.partition),
                        offset=msg.offset,
                    )
                    if applied is None:
                        duplicates += 1
                    else:
                        outcomes.append((touchpoint, applied))
            except POISON as exc:
                poison.add(i)
                await self.dead_letter(items[i][0], exc)
                self._states.pop(customer_id.encode(), None)
                loaded = self.load(customer_id.encode())
                entry = loaded if isinstance(loaded, ExperienceState) else None
                continue
            if duplicates:
                metrics.EVENTS_SKIPPED.labels("duplicate").inc(duplicates)
            return state, outcomes

    def _roll(self, tp: ResolvedTouchpoint, state: ExperienceState, response: Any) -> None:
        self.rolling.add(dimension="channel", value=tp.channel, response=response)
        self.rolling.add(dimension="touchpoint", value=tp.touchpoint or "none", response=response)
        for segment in state.segments:
            self.rolling.add(dimension="segment", value=segment, response=response)
        experiment = tp.context.get("experiment")
        if isinstance(experiment, dict) and experiment.get("id") and experiment.get("variant"):
            value = f"{experiment['id']}:{experiment['variant']}"[:64]
            self.rolling.add(dimension="variant", value=value, response=response)

    async def _skip_tombstoned(self, entry: Tombstone, touchpoint: ResolvedTouchpoint) -> None:
        if entry.erased:
            metrics.EVENTS_SKIPPED.labels("erased").inc()
            return
        assert entry.merged_into is not None
        if entry.exported is not None and touchpoint.event_id in entry.exported.get(
            "applied_ids", ()
        ):
            # A redelivery of an event the loser had applied: it reaches the winner inside
            # the exported state. Forwarded too, it could arrive before that import (after a
            # restart the touchpoint is redelivered before the export that re-sends the
            # import), be applied, and then be counted a second time by the import.
            metrics.EVENTS_SKIPPED.labels("duplicate").inc()
            return
        metrics.EVENTS_SKIPPED.labels("forwarded").inc()
        body = {"op": "forward", "winner": entry.merged_into, "event": _dump(touchpoint)}
        await self._send(self._handoff_name, entry.merged_into.encode(), orjson.dumps(body))

    # -- hand-over (merges, unmerges, erasures) ------------------------------------------------

    async def on_handoff(self, body: dict[str, Any], *, event: faust.EventT) -> None:
        async with self._unit:
            try:
                await self._handoff(body, event=event)
            finally:
                self._outputs.clear()

    async def _handoff(self, body: dict[str, Any], *, event: faust.EventT) -> None:
        # Each operation sends its outputs, waits for them (``_acknowledged``), and only then
        # writes the table, like ``on_batch``.
        op = body["op"]
        if op == "forward":
            touchpoint = ResolvedTouchpoint.model_validate(body["event"])
            key = body["winner"].encode()
            scored = await self.score_customer(body["winner"], [(event, touchpoint)], kind="h")
            try:
                await self._acknowledged()
            except BaseException:
                self._states.pop(key, None)
                raise
            if scored is not None:
                self.save_scored(scored)
        elif op == "export":
            await self._export(body["loser"], winner=body["winner"], merge_id=body["merge_id"])
        elif op == "import":
            await self._import(
                body["winner"], loser=body["loser"], merge_id=body["merge_id"], data=body["state"]
            )
        elif op == "erase":
            await self._erase(body["customer_id"])
        elif op == "unmerge":
            await self._unmerge(body["loser"], merge_id=body["merge_id"])
        else:
            raise KeyError(f"op: unknown hand-off operation {op!r}")

    async def _export(self, loser: str, *, winner: str, merge_id: str) -> None:
        entry = self.load(loser.encode())
        if isinstance(entry, Tombstone):
            if entry.erased or entry.merge_id != merge_id:
                return  # erased, or already merged elsewhere: nothing of this merge to move
            exported = entry.exported  # a redelivered export: send the same state again
        else:
            # State before output, unlike everywhere else: the winner takes one import per
            # merge id, so the loser must be a tombstone (holding the state it exports) before
            # the import is sent. Sent first, a kill before the tombstone's changelog write
            # left the loser alive after the restart: its next events were applied to it, and
            # the import re-sent with them was ignored as a repeat, losing them. Now a
            # redelivered export finds the tombstone and re-sends exactly what it holds.
            exported = entry.to_dict() if entry is not None else None
            tombstone = Tombstone(merged_into=winner, merge_id=merge_id, exported=exported)
            await self._send(self._scores_name, loser.encode(), None)
            self.save(loser.encode(), tombstone)
            await self._acknowledged()  # the flush in it makes the tombstone durable too
            if isinstance(entry, ExperienceState):
                self.segment_counts.change(entry.segments, ())
        body = {
            "op": "import",
            "winner": winner,
            "loser": loser,
            "merge_id": merge_id,
            "state": exported,
        }
        await self._send(self._handoff_name, winner.encode(), orjson.dumps(body))
        await self._acknowledged()

    async def _import(
        self, winner: str, *, loser: str, merge_id: str, data: dict[str, Any] | None
    ) -> None:
        key = winner.encode()
        entry = self.load(key)
        if isinstance(entry, Tombstone):
            if entry.erased:
                return
            # The winner itself was merged away meanwhile: pass the state on.
            body = {"op": "import", "winner": entry.merged_into, "loser": loser}
            body |= {"merge_id": merge_id, "state": data}
            await self._send(
                self._handoff_name, str(entry.merged_into).encode(), orjson.dumps(body)
            )
            await self._acknowledged()
            return
        state = entry or ExperienceState(customer_id=winner)
        if any(m[0] == merge_id for m in state.merged_from):
            return
        before = list(state.segments)
        if data is not None:
            state = merge_states(state, ExperienceState.from_dict(data))
        state.merged_from = [*state.merged_from, [merge_id, loser]]
        await self.publish_snapshot(state)
        await self._acknowledged()
        self.save(key, state)
        self.segment_counts.change(before, state.segments)
        metrics.IDENTITY_CHANGES.labels("merged").inc()

    async def _erase(self, customer_id: str) -> None:
        key = customer_id.encode()
        entry = self.load(key)
        if isinstance(entry, Tombstone) and entry.erased:
            return
        await self._send(self._scores_name, key, None)
        if isinstance(entry, ExperienceState):
            # Customers merged into this one left a tombstone holding their old state.
            for _, loser in entry.merged_from:
                body = {"op": "erase", "customer_id": loser}
                await self._send(self._handoff_name, loser.encode(), orjson.dumps(body))
        await self._acknowledged()
        self.save(key, Tombstone(erased=True))
        if self.insights is not None:
            self.insights.erase(customer_id)
        metrics.IDENTITY_CHANGES.labels("erased").inc()
        if isinstance(entry, ExperienceState):
            self.segment_counts.change(entry.segments, ())

    async def _unmerge(self, loser: str, *, merge_id: str) -> None:
        key = loser.encode()
        entry = self.load(key)
        if not isinstance(entry, Tombstone) or entry.erased or entry.merge_id != merge_id:
            return
        if entry.exported is not None:
            state = ExperienceState.from_dict(entry.exported)
            await self.publish_snapshot(state)
            await self._acknowledged()
            self.save(key, state)
            self.segment_counts.change((), state.segments)
        else:
            self.table.pop(key, None)
        metrics.IDENTITY_CHANGES.labels("unmerged").inc()

    # -- base statistics ---------------------------------------------------------------------

    async def publish_base_stats(self) -> None:
        assigned = {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.topics.touchpoints_resolved
        }
        rows: dict[int, list[tuple[float, int, int]]] = {p: [] for p in assigned}
        segments: Counter[str] = Counter()
        for i, raw in enumerate(self.table.values()):
            if i % 5000 == 4999:
                await asyncio.sleep(0)
            entry = load_entry(orjson.loads(raw))
            if isinstance(entry, ExperienceState) and entry.partition in rows:
                segments.update(entry.segments)
                row = base_row(entry)
                if row is not None:
                    rows[entry.partition].append(row)
        # Customers per segment over the partitions this worker owns now (the incremental
        # counts drift across rebalances and restarts; this recount sets them right).
        self.segment_counts.reset(segments)
        producer = self.app.producer
        for partition, partition_rows in rows.items():
            value = orjson.dumps(partition_histogram(partition_rows))
            await producer.send_and_wait(
                self.base_stats.get_topic_name(),
                key=str(partition).encode(),
                value=value,
                partition=0,
                timestamp=None,
                headers=None,
            )

    def apply_base_stats(self) -> None:
        cuts = recompute_cuts(self.base_by_partition.values())
        if cuts is None:
            return
        deciles, thresholds = cuts
        self.model = replace(self.model, decile_cuts=deciles, rfm_thresholds=thresholds)
        metrics.BASE_CUSTOMERS.set(deciles.base_size)

    async def follow_base_stats(self) -> None:
        """Read every partition's statistics (the whole topic, no group) and recompute."""
        await self.base_stats.maybe_declare()
        await follow_partition_values(
            self.settings.kafka_bootstrap,
            self.base_stats.get_topic_name(),
            self.base_by_partition,
            on_change=self.apply_base_stats,
        )


@dataclass(slots=True)
class _Pending:
    """A customer's state after a unit of work, to be written once its outputs are acked."""

    key: bytes
    state: ExperienceState
    event: faust.EventT
    before: list[str]
    outcomes: list[tuple[ResolvedTouchpoint, Applied]]


class _FaustProducerAdapter:
    """faust's producer under the aiokafka signature ``cxm_shared.dlq`` calls."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer

    async def send_and_wait(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: Any
    ) -> Any:
        return await self._producer.send_and_wait(topic, key, value, None, None, headers)


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1e6):06d}Z"


def _dump(touchpoint: ResolvedTouchpoint) -> dict[str, Any]:
    return touchpoint.model_dump(mode="json")


def _topic_label(topic: str, settings: ScoringSettings) -> str:
    prefix = settings.topic_prefix
    return topic[len(prefix) :] if prefix and topic.startswith(prefix) else topic


def create_faust_app(settings: ScoringSettings) -> faust.App:
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    app = make_faust_app(
        app_id(settings),
        bootstrap=settings.kafka_bootstrap,
        datadir=Path(settings.data_dir) / "scoring",
        store=settings.table_store,
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        producer_linger=settings.producer_linger_s,
        # A snapshot is ~1.5 kB: batches of 16 kB (the default) mean a request per ten.
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
    )
    scorer = Scorer(app, settings)
    app.scorer = scorer  # type: ignore[attr-defined]
    if settings.insights_enabled:
        scorer.insights = register_insights(app, scorer, app_id=app_id(settings))

    @app.agent(scorer.resolved, concurrency=1, name="score_experience")
    async def score_experience(stream: faust.StreamT) -> None:
        # take_events acknowledges a batch's offsets only after the body has processed it.
        within = settings.batch_within_s
        async for events in stream.take_events(settings.batch_max_events, within=within):
            await scorer.on_batch(events)

    @app.agent(scorer.handoff, concurrency=1, name="hand_over")
    async def hand_over(stream: faust.StreamT) -> None:
        async for event in stream.events():
            msg = event.message
            try:
                await scorer.on_handoff(orjson.loads(msg.value), event=event)
            except POISON as exc:
                await scorer.dead_letter(event, exc)

    @app.agent(scorer.merges, concurrency=1, name="follow_identity_changes")
    async def follow_identity_changes(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                change = IdentityChange.model_validate_json(event.message.value)
            except POISON as exc:
                await scorer.dead_letter(event, exc)
                continue
            op = "export" if change.kind == "merged" else "unmerge"
            body = {
                "op": op,
                "winner": change.winner_id,
                "loser": change.loser_id,
                "merge_id": change.merge_id,
            }
            await scorer.handoff.send(key=change.loser_id.encode(), value=orjson.dumps(body))

    @app.agent(scorer.erasures, concurrency=1, name="follow_erasures")
    async def follow_erasures(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                erased = CustomerErased.model_validate_json(event.message.value)
            except POISON as exc:
                await scorer.dead_letter(event, exc)
                continue
            body = {"op": "erase", "customer_id": erased.customer_id}
            await scorer.handoff.send(key=erased.customer_id.encode(), value=orjson.dumps(body))

    @app.timer(settings.base_stats_interval_s)
    async def publish_base_stats() -> None:
        await scorer.publish_base_stats()

    @app.task
    async def follow_base_stats() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await scorer.follow_base_stats()

    return app
