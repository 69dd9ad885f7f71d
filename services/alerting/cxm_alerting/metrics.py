"""Prometheus metrics of the alerting service. Labels are low-cardinality (kind, team,
channel); never customer ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ALERTS_RAISED = Counter(
    "cxm_alerting_alerts_raised_total", "Alerts opened or re-opened", ["kind", "team"]
)
ALERTS_MUTED = Counter(
    "cxm_alerting_alerts_muted_total", "Alerts muted by a silence or inhibition", ["kind", "mute"]
)
SIGNALS_CONSUMED = Counter("cxm_alerting_signals_consumed_total", "Signals processed", ["kind"])
DEAD_LETTERED = Counter(
    "cxm_alerting_dead_lettered_total", "Messages sent to a dead-letter topic", ["topic"]
)
DELIVERY_LATENCY = Histogram(
    "cxm_alerting_delivery_latency_seconds",
    "From the alert decision to the receiver's 2xx",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DELIVERY_FAILURES = Counter(
    "cxm_alerting_delivery_failures_total",
    "Delivery attempts that did not succeed",
    ["channel", "retryable"],
)
DELIVERY_RETRIES = Counter(
    "cxm_alerting_delivery_retries_total", "Deliveries scheduled for another attempt", ["channel"]
)
DELIVERIES_GIVEN_UP = Counter(
    "cxm_alerting_deliveries_given_up_total", "Deliveries abandoned", ["channel"]
)
OPEN_ALERTS = Gauge("cxm_alerting_open_alerts", "Alerts currently open (not acked)", ["team"])
TIME_TO_ACK = Histogram(
    "cxm_alerting_time_to_ack_seconds",
    "From alert opening to acknowledgement",
    ["team"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400),
)
SLA_BREACHES = Counter("cxm_alerting_sla_breaches_total", "Acknowledgement SLAs missed", ["team"])
NOTIFICATIONS_REPEATED = Counter(
    "cxm_alerting_notifications_repeated_total",
    "Reminders of alerts still open after their route's repeat_interval",
    ["team"],
)
