"""Generates the Grafana dashboards in ``deploy/grafana/dashboards/`` from the panel lists below.

    python deploy/grafana/dashboards.py          # rewrite the JSON files
    python deploy/grafana/dashboards.py --check  # exit 1 when a file differs from this script

Panels are data here (title, PromQL, unit, kind), so reviewing a dashboard change means
reading a few lines of PromQL instead of hundreds of lines of JSON. Every query uses only
metrics the platform exports (``services/*/cxm_*/metrics.py``, ``cxm_shared.lag``, the broker's
JMX exporter, the PostgreSQL exporter) and the recording rules in ``deploy/prometheus/rules``;
``tests/observability/test_prometheus_dashboards.py`` runs every one of them against a real
Prometheus scraping the running platform and fails on a query that returns nothing.

Template variables: ``$channel``, ``$touchpoint``, ``$segment``, ``$team`` (CX overview) and
``$group`` (pipeline health) are multi-value with ``.*`` for "All", so queries use ``=~``.
Standard library only: no Grafana SDK needed to regenerate.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
WIDTH = 24  # Grafana's grid


@dataclass(frozen=True)
class Q:
    """One query: PromQL, legend, instant (one value per series) or a range over time."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False
    heatmap: bool = False  # cumulative histogram buckets shown as per-bucket counts


@dataclass(frozen=True)
class P:
    title: str
    queries: tuple[Q, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries, stat, bargauge, table
    description: str = ""
    width: int = 8
    height: int = 8
    minimum: float | None = None
    maximum: float | None = None
    decimals: int | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[P, ...]


@dataclass(frozen=True)
class Var:
    name: str
    label: str
    query: str  # label_values(<selector>, <label>)


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Var, ...] = ()
    tags: tuple[str, ...] = field(default=("cxm",))
    time_from: str = "now-3h"


def q(expr: str, legend: str = "", **kw: Any) -> Q:
    return Q(" ".join(expr.split()), legend, **kw)


def quantiles(metric: str, by: str = "", window: str = "$__rate_interval") -> tuple[Q, ...]:
    """p50 and p95 of a histogram, per ``by`` label when given."""
    group = f"{by}, le" if by else "le"
    legend = f"{{{{{by}}}}} " if by else ""
    return tuple(
        q(
            f"histogram_quantile({v}, sum by ({group}) (rate({metric}_bucket[{window}])))",
            f"{legend}p{int(float(v) * 100)}",
        )
        for v in ("0.5", "0.95")
    )


def survey_panels(recorded: str, label: str, **kw: Any) -> tuple[P, ...]:
    dims = (("channel", "$channel"), ("touchpoint", "$touchpoint"), ("segment", "$segment"))
    return tuple(
        P(
            f"{label} by {dim}",
            (q(f'{recorded}{{dimension="{dim}", value=~"{var}"}}', "{{value}}"),),
            **kw,
        )
        for dim, var in dims
    )


ROLLING = (
    "Rolling over the last 1000 survey answers per value, as each scoring worker sees its "
    "customers (mean across workers)."
)
SENTIMENT = "cxm_scoring_feedback_sentiment_total"
INSIGHTS = (
    "Whole customer base, merged from every scoring worker's partitions (each worker exports "
    "the same figures: max across instances)."
)
DRIVERS = (
    "How much the customer's next survey answer moves when the driver happened since the "
    "previous answer, adjusted for the other drivers (OLS); ranked, with 95% intervals, in "
    "GET /v1/insights/drivers. " + INSIGHTS
)
SEGMENT_COUNT = (
    "Each scoring worker counts the customers of the partitions it owns (summed here); kept "
    "up to date as customers enter and exit segments and recounted at every base-statistics "
    "tick, so approximate for a moment after a rebalance or restart."
)

CX_OVERVIEW = Dashboard(
    uid="cxm-cx-overview",
    title="CXM / CX overview",
    description="Experience across every channel, touchpoint and segment; CX alerts by team.",
    variables=(
        Var("channel", "Channel", 'label_values(cxm_scoring_nps{dimension="channel"}, value)'),
        Var(
            "touchpoint",
            "Touchpoint",
            'label_values(cxm_scoring_nps{dimension="touchpoint"}, value)',
        ),
        Var("segment", "Segment", 'label_values(cxm_scoring_nps{dimension="segment"}, value)'),
        Var("team", "Team", "label_values(cxm_alerting_alerts_raised_total, team)"),
    ),
    rows=(
        Row(
            "Net Promoter Score (-100..100)",
            survey_panels(
                "cxm:nps:avg", "NPS", description=ROLLING, minimum=-100, maximum=100, decimals=0
            ),
        ),
        Row(
            "Customer satisfaction (CSAT 1-5)",
            (
                *survey_panels(
                    "cxm:csat_mean:avg", "CSAT mean", description=ROLLING, minimum=1, maximum=5
                ),
                P(
                    "CSAT top-2-box share by channel",
                    (
                        q(
                            'avg by (value) (cxm_scoring_csat_top2_share{dimension="channel",'
                            ' value=~"$channel"})',
                            "{{value}}",
                        ),
                    ),
                    unit="percentunit",
                    description="Share of CSAT answers of 4 or 5. " + ROLLING,
                    width=12,
                    minimum=0,
                    maximum=1,
                ),
                P(
                    "Survey answers scored per minute",
                    (
                        q(
                            'sum(rate(cxm_scoring_events_scored_total{type="survey_response"}'
                            "[$__rate_interval])) * 60",
                            "answers / min",
                        ),
                    ),
                    width=12,
                ),
            ),
        ),
        Row(
            "Customer effort (CES 1-5, 5 = most effort)",
            survey_panels(
                "cxm:ces_mean:avg", "CES mean", description=ROLLING, minimum=1, maximum=5
            ),
        ),
        Row(
            "Sentiment and churn risk",
            (
                P(
                    "Negative feedback detected per minute",
                    (
                        q(
                            'sum(rate(cxm_scoring_signals_total{kind="negative_feedback"}'
                            "[$__rate_interval])) * 60",
                            "negative texts / min",
                        ),
                    ),
                    description="Free-text comments, feedback and reviews (Japanese and "
                    "English) the sentiment analyser found negative.",
                ),
                P(
                    "Negative texts per survey, feedback and review event",
                    (
                        q(
                            'sum(increase(cxm_scoring_signals_total{kind="negative_feedback"}'
                            "[$__range])) / sum(increase(cxm_scoring_events_scored_total"
                            '{type=~"survey_response|feedback|review"}[$__range]))',
                            "negative share",
                            instant=True,
                        ),
                    ),
                    unit="percentunit",
                    kind="stat",
                    width=4,
                ),
                P(
                    "High churn risk (>= 0.7) share of scored events",
                    (
                        q(
                            '1 - sum(increase(cxm_scoring_churn_risk_bucket{le="0.7"}[$__range]))'
                            " / sum(increase(cxm_scoring_churn_risk_count[$__range]))",
                            "churn risk >= 0.7",
                            instant=True,
                        ),
                    ),
                    unit="percentunit",
                    kind="stat",
                    width=4,
                ),
                P(
                    "Churn-risk distribution (customers' score after each event)",
                    (
                        q(
                            "sum by (le) (increase(cxm_scoring_churn_risk_bucket[$__range]))",
                            "{{le}}",
                            instant=True,
                            heatmap=True,
                        ),
                    ),
                    kind="bargauge",
                ),
                P(
                    "Churn-risk signals in range",
                    (
                        q(
                            "sum by (kind) (increase(cxm_scoring_signals_total"
                            '{kind=~"churn_risk_.*"}[$__range]))',
                            "{{kind}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                    width=12,
                ),
                P(
                    "Signals per minute by kind",
                    (
                        q(
                            "sum by (kind) (rate(cxm_scoring_signals_total[$__rate_interval])) "
                            "* 60",
                            "{{kind}}",
                        ),
                    ),
                    width=12,
                ),
                P(
                    "Feedback sentiment",
                    (
                        q(
                            f"sum by (language, label) (increase({SENTIMENT}[$__range]))"
                            " / ignoring (label) group_left"
                            f" sum by (language) (increase({SENTIMENT}[$__range]))",
                            "{{language}} {{label}}",
                            instant=True,
                        ),
                    ),
                    unit="percentunit",
                    kind="bargauge",
                    description="Share of analysed free texts (survey comments, feedback, "
                    "reviews, support notes) per sentiment label, by the language of the "
                    "lexicon that scored them (ja, en).",
                    width=12,
                    minimum=0,
                    maximum=1,
                ),
                P(
                    "Negative share of feedback by language",
                    (
                        q(
                            f'sum by (language) (rate({SENTIMENT}{{label="negative"}}'
                            "[$__rate_interval])) / sum by (language) "
                            f"(rate({SENTIMENT}[$__rate_interval]))",
                            "{{language}}",
                        ),
                    ),
                    unit="percentunit",
                    width=12,
                    minimum=0,
                    maximum=1,
                ),
            ),
        ),
        Row(
            "Segments (RFM and rule-based)",
            (
                P(
                    "Purchasing customers in the base",
                    (q("max(cxm_scoring_base_customers)", "customers", instant=True),),
                    kind="stat",
                    description="Customers behind the current decile and RFM cut points.",
                    width=4,
                ),
                P(
                    "NPS by RFM segment",
                    (q('cxm:nps:avg{dimension="segment", value=~"rfm:.*"}', "{{value}}"),),
                    kind="bargauge",
                    description=ROLLING,
                    width=10,
                    minimum=-100,
                    maximum=100,
                    decimals=0,
                ),
                P(
                    "Segment entries and exits per minute",
                    (
                        q(
                            "sum by (kind) (rate(cxm_scoring_signals_total"
                            '{kind=~"segment_entered|segment_exited"}[$__rate_interval])) * 60',
                            "{{kind}}",
                        ),
                    ),
                    width=10,
                ),
                P(
                    "Customers per RFM segment",
                    (
                        q(
                            'sum by (segment) (cxm_scoring_customers{segment=~"rfm:.*"})',
                            "{{segment}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                    description=SEGMENT_COUNT,
                    width=12,
                    decimals=0,
                ),
                P(
                    "Customers per segment over time",
                    (
                        q(
                            'sum by (segment) (cxm_scoring_customers{segment=~"$segment"})',
                            "{{segment}}",
                        ),
                    ),
                    description=SEGMENT_COUNT,
                    width=12,
                    decimals=0,
                ),
            ),
        ),
        Row(
            "CX alerts by team",
            (
                P(
                    "Alerts raised per minute by team",
                    (
                        q(
                            'sum by (team) (rate(cxm_alerting_alerts_raised_total{team=~"$team"}'
                            "[$__rate_interval])) * 60",
                            "{{team}}",
                        ),
                    ),
                ),
                P(
                    "Open (unacknowledged) alerts by team",
                    (q('sum by (team) (cxm_alerting_open_alerts{team=~"$team"})', "{{team}}"),),
                ),
                P(
                    "Alerts raised in range by team and kind",
                    (
                        q(
                            "sum by (team, kind) (increase(cxm_alerting_alerts_raised_total"
                            '{team=~"$team"}[$__range]))',
                            "{{team}} {{kind}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                ),
                P(
                    "Alerts acknowledged in range by team",
                    (
                        q(
                            "sum by (team) (increase(cxm_alerting_time_to_ack_seconds_count"
                            '{team=~"$team"}[$__range]))',
                            "{{team}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                ),
                P(
                    "Time to acknowledge (p50, p90) by team",
                    tuple(
                        q(
                            f"histogram_quantile({v}, sum by (team, le) (increase("
                            'cxm_alerting_time_to_ack_seconds_bucket{team=~"$team"}[$__range])))',
                            f"{{{{team}}}} p{int(float(v) * 100)}",
                            instant=True,
                        )
                        for v in ("0.5", "0.9")
                    ),
                    unit="s",
                    kind="bargauge",
                ),
                P(
                    "Acknowledgement SLA breaches in range by team",
                    (
                        q(
                            "sum by (team) (increase(cxm_alerting_sla_breaches_total"
                            '{team=~"$team"}[$__range]))',
                            "{{team}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                ),
            ),
        ),
        Row(
            "CX insights: journey drop-off, key drivers, experiments",
            (
                P(
                    "Journey funnel: customers per step",
                    (
                        q(
                            "max by (funnel, step) (cxm_scoring_insights_funnel_customers"
                            '{segment="all"})',
                            "{{funnel}} {{step}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                    description=INSIGHTS
                    + " Customers who completed each step (and every one before it); the "
                    "drop-off between steps is in GET /v1/insights/funnels/{funnel}.",
                    decimals=0,
                ),
                P(
                    "Funnel step customers by segment",
                    (
                        q(
                            "max by (segment, step) (cxm_scoring_insights_funnel_customers"
                            '{segment=~"$segment"})',
                            "{{segment}} {{step}}",
                        ),
                    ),
                    description=INSIGHTS + " Customers counted in each of their current segments.",
                    decimals=0,
                ),
                P(
                    "Survey answers behind the key-driver analysis",
                    (
                        q(
                            "max by (metric) (cxm_scoring_insights_survey_answers)",
                            "{{metric}}",
                            instant=True,
                        ),
                    ),
                    kind="stat",
                    description=INSIGHTS,
                    decimals=0,
                ),
                P(
                    "Key drivers of NPS (effect on the next answer, points)",
                    (
                        q(
                            'max by (driver) (cxm_scoring_insights_driver_effect{metric="nps"})',
                            "{{driver}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                    description=DRIVERS,
                    decimals=2,
                ),
                P(
                    "Key drivers of CSAT (effect on the next answer, points)",
                    (
                        q(
                            'max by (driver) (cxm_scoring_insights_driver_effect{metric="csat"})',
                            "{{driver}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                    description=DRIVERS,
                    decimals=2,
                ),
                P(
                    "Key-driver p-values (NPS and CSAT)",
                    (
                        q(
                            "max by (metric, driver) (cxm_scoring_insights_driver_p_value)",
                            "{{metric}} {{driver}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                    description="Two-sided p-value of each driver's effect; below 0.05 the "
                    "effect is significant at 95%.",
                    minimum=0,
                    maximum=1,
                ),
                P(
                    "Experiment conversion by variant",
                    (
                        q(
                            "max by (experiment, variant) (cxm_scoring_insights_experiment_"
                            'customers{outcome="converted"}) / max by (experiment, variant) '
                            '(cxm_scoring_insights_experiment_customers{outcome="exposed"})',
                            "{{experiment}} {{variant}}",
                            instant=True,
                        ),
                    ),
                    unit="percentunit",
                    kind="bargauge",
                    description=INSIGHTS
                    + " Share of the customers first exposed to a variant who purchased within "
                    "the experiment window; difference, interval and p-value per variant in "
                    "GET /v1/insights/experiments/{id}.",
                    width=12,
                    minimum=0,
                    maximum=1,
                ),
                P(
                    "Experiment customers by variant",
                    (
                        q(
                            "max by (experiment, variant, outcome) "
                            "(cxm_scoring_insights_experiment_customers)",
                            "{{experiment}} {{variant}} {{outcome}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                    description=INSIGHTS,
                    width=12,
                    decimals=0,
                ),
            ),
        ),
    ),
)

PIPELINE = Dashboard(
    uid="cxm-pipeline",
    title="CXM / Pipeline health",
    description="Ingest, Kafka, end-to-end latency, dead letters, alert delivery, workers, "
    "PostgreSQL.",
    time_from="now-1h",
    variables=(
        Var("group", "Consumer group", "label_values(cxm_kafka_consumer_lag_messages, group)"),
    ),
    rows=(
        Row(
            "Flow",
            (
                P(
                    "Events per second by stage",
                    (q("cxm:stage_events:rate1m", "{{stage}}"),),
                    description="Accepted by ingest, resolved by profile, scored by scoring, "
                    "signals taken by alerting. A stage below the one before it is falling "
                    "behind (see consumer lag).",
                    width=16,
                ),
                P(
                    "Scrape targets up",
                    (q('up{job=~"cxm-.*|kafka|postgres"}', "{{job}}", instant=True),),
                    kind="stat",
                    width=8,
                ),
            ),
        ),
        Row(
            "Ingest",
            (
                P(
                    "Accepted events per second by source and channel",
                    (
                        q(
                            "sum by (source, channel) (rate(cxm_ingest_events_total"
                            '{outcome="accepted"}[$__rate_interval]))',
                            "{{source}} / {{channel}}",
                        ),
                    ),
                    description="Channel is the write key's channel (one key per channel system).",
                ),
                P(
                    "Rejected events per second by reason",
                    (
                        q(
                            "sum by (reason) (rate(cxm_ingest_events_total"
                            '{outcome="rejected"}[$__rate_interval]))',
                            "{{reason}}",
                        ),
                    ),
                ),
                P(
                    "Rejected and duplicate events in range",
                    (
                        q(
                            "sum by (outcome, reason) (increase(cxm_ingest_events_total"
                            '{outcome!="accepted"}[$__range]))',
                            "{{outcome}} {{reason}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                ),
                P(
                    "HTTP answers per second by status",
                    (
                        q(
                            "sum by (status) (rate(cxm_ingest_request_seconds_count"
                            "[$__rate_interval]))",
                            "{{status}}",
                        ),
                    ),
                ),
                P(
                    "5xx share of answers (5m)",
                    (q("cxm:ingest_5xx:ratio_rate5m", "5xx", instant=True),),
                    unit="percentunit",
                    kind="stat",
                    width=4,
                ),
                P(
                    "Request time",
                    quantiles("cxm_ingest_request_seconds"),
                    unit="s",
                    width=6,
                ),
                P(
                    "Kafka produce time (until acks=all)",
                    quantiles("cxm_ingest_kafka_produce_seconds"),
                    unit="s",
                    width=6,
                ),
            ),
        ),
        Row(
            "Kafka",
            (
                P(
                    "Consumer lag by group",
                    (
                        q(
                            'sum by (group) (cxm_kafka_consumer_lag_messages{group=~"$group"})',
                            "{{group}}",
                        ),
                    ),
                    description="Messages written but not yet committed by the group "
                    "(cxm_shared.lag).",
                ),
                P(
                    "Consumer lag by group, topic and partition",
                    (
                        q(
                            'cxm_kafka_consumer_lag_messages{group=~"$group"}',
                            instant=True,
                            table=True,
                        ),
                    ),
                    kind="table",
                ),
                P(
                    "Broker: messages in per second by topic",
                    (
                        q(
                            "sum by (topic) (rate(kafka_server_brokertopicmetrics_messagesinpersec"
                            '_total{topic=~"cx.*"}[$__rate_interval]))',
                            "{{topic}}",
                        ),
                    ),
                ),
                P(
                    "Broker: request time p99",
                    (
                        q(
                            'kafka_network_requestmetrics_totaltimems{quantile="0.99"}',
                            "{{request}}",
                        ),
                    ),
                    unit="ms",
                    description="Fetch includes the time a fetch waits for data "
                    "(fetch.max.wait.ms).",
                ),
                P(
                    "Broker: partitions",
                    (
                        q(
                            "sum(kafka_server_replicamanager_underreplicatedpartitions)",
                            "under-replicated",
                            instant=True,
                        ),
                        q(
                            "sum(kafka_controller_kafkacontroller_offlinepartitionscount)",
                            "offline",
                            instant=True,
                        ),
                        q(
                            "sum(kafka_controller_kafkacontroller_activecontrollercount)",
                            "active controllers",
                            instant=True,
                        ),
                        q(
                            "sum(kafka_server_replicamanager_partitioncount)",
                            "partitions",
                            instant=True,
                        ),
                    ),
                    kind="stat",
                ),
                P(
                    "Broker: JVM heap used",
                    (q('jvm_memory_used_bytes{job="kafka", area="heap"}', "heap"),),
                    unit="bytes",
                ),
            ),
        ),
        Row(
            "Latency through the pipeline",
            (
                P(
                    "End to end: HTTP accept -> scored",
                    quantiles("cxm_scoring_end_to_end_seconds"),
                    unit="s",
                    description="From the ingest's 2xx (the touchpoint's received_at) through "
                    "identity resolution to its scoring.",
                ),
                P(
                    "Resolved -> scored (scoring processing lag)",
                    quantiles("cxm_scoring_processing_lag_seconds"),
                    unit="s",
                    description="From the touchpoint's append to the resolved topic to its "
                    "scoring.",
                ),
                P(
                    "Alert decision -> receiver 2xx, by channel",
                    quantiles("cxm_alerting_delivery_latency_seconds", by="channel"),
                    unit="s",
                ),
                P(
                    "Identity resolution (one database transaction)",
                    quantiles("cxm_profile_resolution_seconds"),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Dead letters",
            (
                P(
                    "Messages in dead-letter topics",
                    (q("cxm:dead_letters:sum", "{{topic}}", instant=True),),
                    kind="bargauge",
                    description="Everything ever set aside, whichever service wrote it.",
                    width=12,
                ),
                P(
                    "Dead-lettered in range by service",
                    (
                        q(
                            'sum(increase(cxm_profile_events_total{outcome="dead_lettered"}'
                            "[$__range]))",
                            "profile",
                            instant=True,
                        ),
                        q(
                            "sum by (topic) (increase(cxm_scoring_dead_letters_total[$__range]))",
                            "scoring {{topic}}",
                            instant=True,
                        ),
                        q(
                            "sum by (topic) (increase(cxm_alerting_dead_lettered_total[$__range]))",
                            "alerting {{topic}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                    width=12,
                ),
            ),
        ),
        Row(
            "Alert delivery",
            (
                P(
                    "Deliveries per second by channel",
                    (
                        q(
                            "sum by (channel) (rate(cxm_alerting_delivery_latency_seconds_count"
                            "[$__rate_interval]))",
                            "{{channel}} delivered",
                        ),
                        q(
                            "sum by (channel, retryable) (rate(cxm_alerting_delivery_failures"
                            "_total[$__rate_interval]))",
                            "{{channel}} failed (retryable={{retryable}})",
                        ),
                    ),
                ),
                P(
                    "Failed share of attempts (10m)",
                    (q("cxm:alert_delivery_failures:ratio_rate10m", "{{channel}}"),),
                    unit="percentunit",
                ),
                P(
                    "Retries and abandoned deliveries in range",
                    (
                        q(
                            "sum by (channel) (increase(cxm_alerting_delivery_retries_total"
                            "[$__range]))",
                            "{{channel}} retried",
                            instant=True,
                        ),
                        q(
                            "sum by (channel) (increase(cxm_alerting_deliveries_given_up_total"
                            "[$__range]))",
                            "{{channel}} given up",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                ),
            ),
        ),
        Row(
            "Workers",
            (
                P(
                    "Process restarts in range",
                    (
                        q(
                            'changes(process_start_time_seconds{job=~"cxm-.*|kafka"}[$__range])',
                            "{{job}}",
                            instant=True,
                        ),
                    ),
                    kind="stat",
                    description="A restarted faust worker recovers its tables from their "
                    "changelog and rejoins its group before it consumes again.",
                    width=6,
                ),
                P(
                    "Uptime",
                    (
                        q(
                            'time() - process_start_time_seconds{job=~"cxm-.*|kafka"}',
                            "{{job}}",
                            instant=True,
                        ),
                    ),
                    unit="s",
                    kind="stat",
                    width=6,
                ),
                P(
                    "CPU (cores)",
                    (
                        q(
                            'rate(process_cpu_seconds_total{job=~"cxm-.*|kafka"}'
                            "[$__rate_interval])",
                            "{{job}}",
                        ),
                    ),
                    width=6,
                ),
                P(
                    "Resident memory",
                    (q('process_resident_memory_bytes{job=~"cxm-.*|kafka"}', "{{job}}"),),
                    unit="bytes",
                    width=6,
                ),
            ),
        ),
        Row(
            "PostgreSQL",
            (
                P(
                    "PostgreSQL up",
                    (q("pg_up", "up", instant=True),),
                    kind="stat",
                    width=4,
                ),
                P(
                    "Connections by state",
                    (
                        q(
                            'sum by (state) (pg_stat_activity_count{datname="cxm"})',
                            "{{state}}",
                        ),
                    ),
                    width=5,
                ),
                P(
                    "Transactions per second",
                    (
                        q(
                            'sum(rate(pg_stat_database_xact_commit{datname="cxm"}'
                            "[$__rate_interval]))",
                            "commits",
                        ),
                        q(
                            'sum(rate(pg_stat_database_xact_rollback{datname="cxm"}'
                            "[$__rate_interval]))",
                            "rollbacks",
                        ),
                    ),
                    width=5,
                ),
                P(
                    "Buffer cache hit ratio",
                    (
                        q(
                            'sum(rate(pg_stat_database_blks_hit{datname="cxm"}'
                            "[$__rate_interval])) / (sum(rate(pg_stat_database_blks_hit"
                            '{datname="cxm"}[$__rate_interval])) + sum(rate('
                            'pg_stat_database_blks_read{datname="cxm"}[$__rate_interval])))',
                            "hit ratio",
                        ),
                    ),
                    unit="percentunit",
                    width=5,
                ),
                P(
                    "Database size",
                    (q('pg_database_size_bytes{datname="cxm"}', "cxm"),),
                    unit="bytes",
                    width=5,
                ),
            ),
        ),
    ),
)

IDENTITY = Dashboard(
    uid="cxm-identity",
    title="CXM / Identity resolution",
    description="Cross-device identity: resolutions, merges, quarantined merges, unmerges, "
    "cluster sizes.",
    rows=(
        Row(
            "Resolution",
            (
                P(
                    "Touchpoints per second by outcome",
                    (
                        q(
                            "sum by (outcome) (rate(cxm_profile_events_total[$__rate_interval]))",
                            "{{outcome}}",
                        ),
                    ),
                ),
                P(
                    "Identifiers held by the resolved customer (cluster size)",
                    quantiles("cxm_profile_cluster_size"),
                ),
                P(
                    "Cluster size distribution in range",
                    (
                        q(
                            "sum by (le) (increase(cxm_profile_cluster_size_bucket[$__range]))",
                            "{{le}}",
                            instant=True,
                            heatmap=True,
                        ),
                    ),
                    kind="bargauge",
                ),
                P(
                    "Resolution time (one database transaction)",
                    quantiles("cxm_profile_resolution_seconds"),
                    unit="s",
                ),
                P(
                    "Retries after a concurrent change per second",
                    (
                        q(
                            "sum(rate(cxm_profile_resolution_retries_total[$__rate_interval]))",
                            "retries",
                        ),
                    ),
                ),
                P(
                    "Profile API lookups",
                    quantiles("cxm_profile_lookup_seconds", by="by"),
                    unit="s",
                ),
            ),
        ),
        Row(
            "Merges",
            (
                P(
                    "Merges per minute by rule",
                    (
                        q(
                            "sum by (rule) (rate(cxm_profile_merges_total[$__rate_interval])) * 60",
                            "{{rule}}",
                        ),
                    ),
                ),
                P(
                    "Merges in range by rule",
                    (
                        q(
                            "sum by (rule) (increase(cxm_profile_merges_total[$__range]))",
                            "{{rule}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                ),
                P(
                    "Quarantined merges in range by reason",
                    (
                        q(
                            "sum by (reason) (increase(cxm_profile_quarantined_merges_total"
                            "[$__range]))",
                            "{{reason}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                    description="Merges a rule refused (low-trust channel, identifier limits, "
                    "previously unmerged, weak link) waiting for a person.",
                ),
                P(
                    "Quarantine decisions in range",
                    (
                        q(
                            "sum by (decision) (increase(cxm_profile_quarantine_decisions_total"
                            "[$__range]))",
                            "{{decision}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                ),
                P(
                    "Unmerges and erasures in range",
                    (
                        q(
                            "sum(increase(cxm_profile_unmerges_total[$__range]))",
                            "unmerges",
                            instant=True,
                        ),
                        q(
                            "sum(increase(cxm_profile_erasures_total[$__range]))",
                            "erasures",
                            instant=True,
                        ),
                    ),
                    kind="stat",
                ),
                P(
                    "Identity changes applied by scoring in range",
                    (
                        q(
                            "sum by (kind) (increase(cxm_scoring_identity_changes_total"
                            "[$__range]))",
                            "{{kind}}",
                            instant=True,
                        ),
                    ),
                    kind="bargauge",
                    description="Merged, unmerged and erased customers' experience state "
                    "moved or removed in the scoring tables.",
                ),
            ),
        ),
    ),
)

DASHBOARDS = {
    "cx-overview.json": CX_OVERVIEW,
    "pipeline-health.json": PIPELINE,
    "identity.json": IDENTITY,
}


def _target(query: Q, ref: str) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": DATASOURCE,
        "refId": ref,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "range": not query.instant,
        "instant": query.instant,
    }
    if query.table:
        target["format"] = "table"
    elif query.heatmap:
        target["format"] = "heatmap"
    return target


def _panel(panel: P, pid: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    for key, value in (("min", panel.minimum), ("max", panel.maximum)):
        if value is not None:
            defaults[key] = value
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    if panel.kind == "timeseries":
        defaults["custom"] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    options: dict[str, Any] = {}
    if panel.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    elif panel.kind == "bargauge":
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"]},
            "orientation": "horizontal",
            "displayMode": "gradient",
        }
    elif panel.kind == "timeseries":
        options = {"legend": {"displayMode": "list", "placement": "bottom"}}
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [_target(query, chr(ord("A") + i)) for i, query in enumerate(panel.queries)],
    }


def _variable(var: Var) -> dict[str, Any]:
    return {
        "name": var.name,
        "label": var.label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": var.query,
        "query": {"query": var.query, "refId": f"{var.name}-values"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    pid = 1
    for row in dashboard.rows:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel(panel, pid, x, y))
            pid += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": dashboard.time_from, "to": "now"},
        "timezone": "",
        "templating": {"list": [_variable(v) for v in dashboard.variables]},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["cxm"],
                "asDropdown": True,
                "title": "CXM dashboards",
            }
        ],
        "panels": panels,
    }


def rendered_files() -> dict[str, str]:
    return {
        name: json.dumps(render(board), indent=2, ensure_ascii=False) + "\n"
        for name, board in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    files = rendered_files()
    if "--check" in argv:
        stale = [
            name
            for name, text in files.items()
            if not (OUT / name).is_file() or (OUT / name).read_text() != text
        ]
        stale += sorted(p.name for p in OUT.glob("*.json") if p.name not in files)
        for name in stale:
            print(f"{OUT / name} differs from {Path(__file__).name}: regenerate", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
