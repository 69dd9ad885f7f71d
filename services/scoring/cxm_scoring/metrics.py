"""Prometheus metrics of the scoring service (``cxm_scoring_``); low-cardinality labels only
(event type, signal kind, channel, touchpoint, segment, experiment variant — never customers)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Gauge, Histogram

from cxm_scoring.domain.survey import SurveyResponse, WindowTotals

EVENTS_SCORED = Counter(
    "cxm_scoring_events_scored_total", "Touchpoints applied to a customer's state", ["type"]
)
EVENTS_SKIPPED = Counter(
    "cxm_scoring_events_skipped_total",
    "Touchpoints not applied (duplicate, erased customer, forwarded to a merge winner)",
    ["reason"],
)
EVENTS_REORDERED = Counter(
    "cxm_scoring_events_reordered_total",
    "Touchpoints delivered below an offset already applied from their partition (applied by"
    " their new event id; a sign of a consumer reordering a partition around a rebalance)",
)
SIGNALS = Counter("cxm_scoring_signals_total", "Signals published", ["kind"])
DEAD_LETTERS = Counter(
    "cxm_scoring_dead_letters_total", "Messages sent to a dead-letter topic", ["topic"]
)
IDENTITY_CHANGES = Counter(
    "cxm_scoring_identity_changes_total", "Merges, unmerges and erasures applied", ["kind"]
)
CHURN_RISK = Histogram(
    "cxm_scoring_churn_risk",
    "Churn-risk score after each scored event",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
PROCESSING_LAG = Histogram(
    "cxm_scoring_processing_lag_seconds",
    "Time from the touchpoint's append to the resolved topic to its scoring",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
END_TO_END = Histogram(
    "cxm_scoring_end_to_end_seconds",
    "Time from the ingest's HTTP accept (the touchpoint's received_at) to its scoring",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
BASE_CUSTOMERS = Gauge(
    "cxm_scoring_base_customers", "Purchasing customers behind the current cut points"
)
NPS = Gauge("cxm_scoring_nps", "Rolling NPS (-100..100)", ["dimension", "value"])
CSAT_MEAN = Gauge("cxm_scoring_csat_mean", "Rolling CSAT mean (1-5)", ["dimension", "value"])
CSAT_TOP2 = Gauge("cxm_scoring_csat_top2_share", "Rolling CSAT top-2-box", ["dimension", "value"])
CES_MEAN = Gauge("cxm_scoring_ces_mean", "Rolling CES mean (1-5)", ["dimension", "value"])
SEGMENT_CUSTOMERS = Gauge(
    "cxm_scoring_customers",
    "Customers per segment (RFM 'rfm:<name>' and rule segments) among the customers of the "
    "partitions this worker owns: sum across workers. Updated as customers enter and exit "
    "segments, recounted from the table at every base-statistics tick; approximate between a "
    "rebalance or restart and the next recount.",
    ["segment"],
)
FEEDBACK_SENTIMENT = Counter(
    "cxm_scoring_feedback_sentiment_total",
    "Free texts (survey comments, feedback, reviews, support notes) analysed, by the language "
    "of the lexicon used and the sentiment label",
    ["language", "label"],
)

KNOWN_TYPES = frozenset(
    {
        "page_view",
        "screen_view",
        "purchase",
        "cart_abandon",
        "survey_response",
        "feedback",
        "support_contact",
        "store_visit",
        "payment",
        "delivery",
        "return",
        "review",
        "experiment_exposure",
    }
)


def type_label(event_type: str) -> str:
    return event_type if event_type in KNOWN_TYPES else "custom"


class RollingSurveyAggregates:
    """NPS/CSAT/CES over the last ``keep`` responses per (dimension, value), kept in process
    (per worker: each sees its partitions' customers; Prometheus sums across workers only
    counts, so dashboards read these per instance). At most ``max_values`` values per
    dimension are tracked, so a mistaken free-text touchpoint cannot explode cardinality."""

    DIMENSIONS = ("channel", "touchpoint", "segment", "variant")

    def __init__(self, *, keep: int = 1000, max_values: int = 50) -> None:
        self._keep = keep
        self._max_values = max_values
        self._windows: dict[tuple[str, str], tuple[deque[SurveyResponse], WindowTotals]] = {}
        self._values: dict[str, set[str]] = {d: set() for d in self.DIMENSIONS}

    def add(self, *, dimension: str, value: str, response: SurveyResponse) -> None:
        key = (dimension, value)
        entry = self._windows.get(key)
        if entry is None:
            seen = self._values[dimension]
            if len(seen) >= self._max_values:
                return
            seen.add(value)
            entry = self._windows[key] = (deque(), WindowTotals())
        window, totals = entry
        window.append(response)
        totals.tally(response, 1)
        if len(window) > self._keep:
            totals.tally(window.popleft(), -1)
        self._export(dimension, value, totals)

    def totals(self, *, dimension: str, value: str) -> WindowTotals | None:
        entry = self._windows.get((dimension, value))
        return entry[1] if entry else None

    @staticmethod
    def _export(dimension: str, value: str, totals: WindowTotals) -> None:
        if totals.nps.nps is not None:
            NPS.labels(dimension, value).set(totals.nps.nps)
        if totals.csat.mean is not None:
            CSAT_MEAN.labels(dimension, value).set(totals.csat.mean)
            CSAT_TOP2.labels(dimension, value).set(totals.csat.top2_share or 0.0)
        if totals.ces.mean is not None:
            CES_MEAN.labels(dimension, value).set(totals.ces.mean)


class SegmentCounts:
    """Customers per segment over this worker's partitions, exported as ``SEGMENT_CUSTOMERS``.

    ``change`` follows each customer's segments as a batch moves them; ``reset`` replaces the
    counts with a recount of the table (the base-statistics timer), which also drops the
    customers of partitions revoked by a rebalance and adds those recovered after a restart.
    Segment names come from the configured rules and the fixed RFM segments; at most
    ``max_values`` are tracked all the same."""

    def __init__(self, *, max_values: int = 100) -> None:
        self._max_values = max_values
        self._counts: dict[str, int] = {}

    def change(self, before: Iterable[str], after: Iterable[str]) -> None:
        old, new = set(before), set(after)
        for name in new - old:
            self._add(name, 1)
        for name in old - new:
            self._add(name, -1)

    def reset(self, counts: Mapping[str, int]) -> None:
        for name in set(self._counts) | set(counts):
            self._set(name, counts.get(name, 0))

    def count(self, name: str) -> int:
        return self._counts.get(name, 0)

    def _add(self, name: str, n: int) -> None:
        self._set(name, self._counts.get(name, 0) + n)

    def _set(self, name: str, value: int) -> None:
        if name not in self._counts and len(self._counts) >= self._max_values:
            return
        value = max(0, value)  # a customer this process had not counted yet (before a recount)
        self._counts[name] = value
        SEGMENT_CUSTOMERS.labels(name).set(value)


# CX insights (cxm_scoring.insights): whole-base figures merged from every partition, so every
# scoring worker exports the same values (take the max across instances, never the sum).
INSIGHTS_FUNNEL_CUSTOMERS = Gauge(
    "cxm_scoring_insights_funnel_customers",
    "Customers who completed a funnel step (and every step before it), whole base, by segment "
    "('all' or the customers' current segments)",
    ["funnel", "step", "segment"],
)
INSIGHTS_DRIVER_EFFECT = Gauge(
    "cxm_scoring_insights_driver_effect",
    "Key-driver effect: change of the next NPS (0-10) / CSAT (1-5) answer when the driver "
    "happened since the previous answer, adjusted for the other drivers (OLS, score points)",
    ["metric", "driver"],
)
INSIGHTS_DRIVER_P_VALUE = Gauge(
    "cxm_scoring_insights_driver_p_value",
    "Two-sided p-value of the key-driver effect (H0: no effect)",
    ["metric", "driver"],
)
INSIGHTS_SURVEY_ANSWERS = Gauge(
    "cxm_scoring_insights_survey_answers",
    "Survey answers behind the key-driver analysis, whole base",
    ["metric"],
)
INSIGHTS_EXPERIMENT_CUSTOMERS = Gauge(
    "cxm_scoring_insights_experiment_customers",
    "Customers first exposed to an experiment variant ('exposed') and of them those who "
    "purchased within the experiment window ('converted'), whole base",
    ["experiment", "variant", "outcome"],
)
