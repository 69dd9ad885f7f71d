"""The streaming side of the insights: per-customer state in the ``insights_by_customer`` table,
per-partition sufficient statistics kept current as events apply, published to a small
compacted internal topic (``<app id>-insights``, key = partition) and merged by every worker,
so each worker's API answers for the whole base (the pattern of the base statistics in
``cxm_scoring.experience.base``).

Cost per event is kept off a second agent: the scorer's batch path (``Scorer.on_batch``) hands
its already-decoded touchpoints here once the batch is scored, so the touchpoints are neither
consumed nor decoded twice; a customer's insight state is written (one changelog message) only
when it changed.

Exactness: a partition's statistics are rebuilt from the table when this worker starts owning
it (after the table recovered), then changed by (new contribution - old contribution) of every
customer whose state changes, and by the erasure of a customer; so they equal a recount of the
table. Other workers' partitions arrive through the topic, at most one publish interval old.

Documented limits: a merged-away customer's insight state stays under its old id (its journey
and answers still count; one person may count twice in a funnel); touchpoints forwarded to a
merge winner are not applied to the insights; funnel order is the order events are applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import faust
import orjson
from faust.streams import _current_event

from cxm_scoring import metrics
from cxm_scoring.experience.models import ExperienceState
from cxm_scoring.insights.config import InsightsConfig, load_insights_config
from cxm_scoring.insights.report import drivers_report, experiment_summaries, funnel_report
from cxm_scoring.insights.state import (
    CONVERTED,
    EXPOSED,
    Aggregate,
    CustomerInsights,
    add_into,
    apply_event,
    contribution,
    decode_aggregate,
    encode_aggregate,
    merge_aggregates,
    set_segments,
)
from cxm_scoring.partition_values import follow_partition_values
from cxm_shared.events import ResolvedTouchpoint

if TYPE_CHECKING:
    from cxm_scoring.config import ScoringSettings
    from cxm_scoring.worker import Scorer

log = logging.getLogger(__name__)

Items = Sequence[tuple[faust.EventT, ResolvedTouchpoint]]


def insights_topic_name(app_id: str) -> str:
    return f"{app_id}-insights"


class InsightsTracker:
    def __init__(
        self, app: faust.App, settings: ScoringSettings, *, app_id: str, resolved_topic: str
    ) -> None:
        self.app = app
        self.settings = settings
        self.config: InsightsConfig = load_insights_config(settings.insights_config_path)
        self.resolved_topic = resolved_topic
        self.topic = app.topic(
            insights_topic_name(app_id),
            partitions=1,
            internal=True,
            config={"cleanup.policy": "compact"},
            key_serializer="raw",
            value_serializer="raw",
        )
        self.table = app.Table(
            "insights_by_customer",
            default=None,
            partitions=settings.topic_partitions,
            schema=faust.Schema(key_serializer="raw", value_serializer="raw"),
            key_type=bytes,
            value_type=bytes,
        )
        # This worker's partitions (kept current), and which of them changed since published.
        self.own: dict[int, Aggregate] = {}
        self.dirty: set[int] = set()
        self._rescan = True
        # Every partition's latest published statistics (from the topic) and their sum.
        self.published: dict[int, Aggregate] = {}
        self.view: Aggregate = {}
        self.view_version = 0
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]

    async def _on_assigned(self, sender: Any, assigned: Any = None, **kwargs: Any) -> None:
        self._rescan = True

    # -- per batch (called by the scorer, synchronously: no await between read and write) ----

    def on_batch(self, scorer: Scorer, groups: Mapping[str, Items]) -> None:
        for customer_id, items in groups.items():
            entry = scorer.load_cached(customer_id.encode())
            if isinstance(entry, ExperienceState):  # not erased, not merged away
                self._apply(customer_id, entry, items)

    def _apply(self, customer_id: str, experience: ExperienceState, items: Items) -> None:
        key = customer_id.encode()
        raw = self.table.get(key)
        state = CustomerInsights() if raw is None else _load(raw)
        partition = items[-1][0].message.partition
        changed = False
        if state.partition != partition:
            state.partition, changed = partition, True
        churn = experience.last_churn_risk
        for event, touchpoint in items:
            msg = event.message
            changed |= apply_event(
                state,
                touchpoint,
                config=self.config,
                source=f"r:{msg.partition}",
                offset=msg.offset,
                churn_risk=churn,
            )
        # After the events: an exposure in this batch records the segments the customer had
        # before it (as of the previous batch), not ones the batch's own events brought.
        changed |= set_segments(state, experience.segments)
        if not changed:
            return
        token = _current_event.set(weakref.ref(items[-1][0]))  # the changelog partition
        try:
            self.table[key] = orjson.dumps(state.to_dict())
        finally:
            _current_event.reset(token)
        agg = self.own.get(partition)
        if agg is not None:
            if raw is not None:
                before = _load(raw)
                if before.partition == partition:
                    add_into(agg, contribution(before, self.config), -1.0)
                elif before.partition in self.own:  # moved: take it off the old partition
                    add_into(self.own[before.partition], contribution(before, self.config), -1.0)
                    self.dirty.add(before.partition)
            add_into(agg, contribution(state, self.config))
            self.dirty.add(partition)

    def erase(self, customer_id: str) -> None:
        """Remove a customer's insight state (called where the experience state is erased, on
        the partition that owns the customer)."""
        key = customer_id.encode()
        raw = self.table.get(key)
        if raw is None:
            return
        state = _load(raw)
        del self.table[key]
        agg = self.own.get(state.partition) if state.partition is not None else None
        if agg is not None:
            add_into(agg, contribution(state, self.config), -1.0)
            self.dirty.add(state.partition)  # type: ignore[arg-type]

    # -- publishing ---------------------------------------------------------------------------

    def _assigned(self) -> set[int]:
        return {
            tp.partition
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == self.resolved_topic
        }

    def _table_ready(self) -> bool:
        try:
            recovered = self.app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        except AttributeError:
            return False
        return recovered and not self.app.rebalancing

    def rescan(self, assigned: set[int]) -> None:
        """Rebuild this worker's partitions' statistics from the table (synchronously, so no
        batch changes the table half way through)."""
        fresh: dict[int, Aggregate] = {p: {} for p in assigned}
        for raw in self.table.values():
            state = _load(raw)
            agg = fresh.get(state.partition)  # type: ignore[arg-type]
            if agg is not None:
                add_into(agg, contribution(state, self.config))
        self.own = fresh
        self.dirty = set(assigned)
        log.info("insights statistics rebuilt partitions=%s", sorted(assigned))

    async def publish(self) -> None:
        if not self._table_ready():
            return
        assigned = self._assigned()
        if self._rescan or not assigned <= self.own.keys():
            self._rescan = False
            self.rescan(assigned)
        for partition in list(self.own):
            if partition not in assigned:
                del self.own[partition]
        # Taken off the dirty set before encoding: a batch that changes a partition while
        # the sends are awaited marks it again for the next tick.
        todo = sorted(self.dirty & assigned)
        self.dirty.clear()
        producer = self.app.producer
        name = self.topic.get_topic_name()
        sent = []
        for partition in todo:
            value = orjson.dumps(encode_aggregate(self.own[partition]))
            key = str(partition).encode()
            sent.append(await producer.send(name, key, value, 0, None, None))
        if sent:
            await producer.flush()
            await asyncio.gather(*sent)

    async def follow(self) -> None:
        """Read every partition's statistics (the whole topic, no group) and merge them."""
        await self.topic.maybe_declare()
        await follow_partition_values(
            self.settings.kafka_bootstrap,
            self.topic.get_topic_name(),
            self.published,
            decode=decode_aggregate,
            on_change=self._on_published,
        )

    def _on_published(self) -> None:
        self.view = merge_aggregates(self.published.values())
        self.view_version += 1
        self.export_metrics()

    def export_metrics(self) -> None:
        """Whole-base figures as gauges (every worker exports the same numbers: dashboards
        take the max across instances)."""
        export_metrics(self.view, self.config, self.settings.insights_min_observations)


def export_metrics(view: Aggregate, config: InsightsConfig, min_observations: int) -> None:
    metrics.INSIGHTS_FUNNEL_CUSTOMERS.clear()
    for funnel in config.funnels:
        report = funnel_report(view, funnel)
        for breakdown in (report, *report.by_segment):
            for step in breakdown.steps:
                metrics.INSIGHTS_FUNNEL_CUSTOMERS.labels(
                    funnel.name, step.step, breakdown.segment
                ).set(step.customers)
    metrics.INSIGHTS_DRIVER_EFFECT.clear()
    metrics.INSIGHTS_DRIVER_P_VALUE.clear()
    metrics.INSIGHTS_SURVEY_ANSWERS.clear()
    for metric in ("nps", "csat"):
        drivers = drivers_report(view, config, metric=metric, min_observations=min_observations)
        metrics.INSIGHTS_SURVEY_ANSWERS.labels(metric).set(drivers.observations)
        for d in drivers.drivers:
            metrics.INSIGHTS_DRIVER_EFFECT.labels(metric, d.driver).set(d.effect)
            metrics.INSIGHTS_DRIVER_P_VALUE.labels(metric, d.driver).set(d.p_value)
    metrics.INSIGHTS_EXPERIMENT_CUSTOMERS.clear()
    summaries = experiment_summaries(view)[: config.experiments.max_experiments]
    for summary in summaries:
        for variant in summary.variants:
            vec = view.get(("x", summary.experiment_id, variant, "all"))
            if vec is None:
                continue
            gauge = metrics.INSIGHTS_EXPERIMENT_CUSTOMERS
            gauge.labels(summary.experiment_id, variant, "exposed").set(vec[EXPOSED])
            gauge.labels(summary.experiment_id, variant, "converted").set(vec[CONVERTED])


def _load(raw: bytes) -> CustomerInsights:
    return CustomerInsights.from_dict(orjson.loads(raw))


def register_insights(app: faust.App, scorer: Scorer, *, app_id: str) -> InsightsTracker:
    """Create the tracker on ``app`` with its publish timer and its reader task."""
    tracker = InsightsTracker(
        app,
        scorer.settings,
        app_id=app_id,
        resolved_topic=scorer.topics.touchpoints_resolved,
    )

    @app.timer(scorer.settings.insights_publish_interval_s)
    async def publish_insights() -> None:
        await tracker.publish()

    @app.task
    async def follow_insights() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await tracker.follow()

    return tracker
