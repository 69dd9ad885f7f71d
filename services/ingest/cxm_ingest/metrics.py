"""Prometheus metrics of the ingest service (labels: source, channel, reason; no customer ids)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS = Counter(
    "cxm_ingest_events_total",
    "Events answered, by outcome (accepted, duplicate, rejected) and reason",
    ["source", "channel", "outcome", "reason"],
)
REQUEST_SECONDS = Histogram(
    "cxm_ingest_request_seconds",
    "Time to answer an ingest request",
    ["route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PRODUCE_SECONDS = Histogram(
    "cxm_ingest_kafka_produce_seconds",
    "Time from handing a request's events to the producer until Kafka acknowledged all",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DEDUP_FAILURES = Counter(
    "cxm_ingest_dedup_store_failures_total",
    "Dedup store (PostgreSQL) calls that failed; ingest went on without them",
    ["operation"],
)
