"""Prometheus metrics of the profile service (labels are low-cardinality only)."""

from prometheus_client import Counter, Histogram

EVENTS = Counter(
    "cxm_profile_events_total",
    "Touchpoints the resolver handled, by outcome",
    ["outcome"],  # resolved, duplicate, unidentified, dead_lettered
)
MERGES = Counter("cxm_profile_merges_total", "Customers merged automatically or approved", ["rule"])
UNMERGES = Counter("cxm_profile_unmerges_total", "Merges undone")
QUARANTINED = Counter(
    "cxm_profile_quarantined_merges_total", "Merges refused by a rule and quarantined", ["reason"]
)
QUARANTINE_DECISIONS = Counter(
    "cxm_profile_quarantine_decisions_total", "Quarantined merges decided by a person", ["decision"]
)
ERASURES = Counter("cxm_profile_erasures_total", "Customers erased")
RETRIES = Counter(
    "cxm_profile_resolution_retries_total", "Resolutions retried after a concurrent change"
)
CLUSTER_SIZE = Histogram(
    "cxm_profile_cluster_size",
    "Identifiers held by the customer an event resolved to",
    buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55, 89),
)
RESOLUTION_SECONDS = Histogram(
    "cxm_profile_resolution_seconds",
    "Time to resolve and store one touchpoint (database transaction)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LOOKUP_SECONDS = Histogram(
    "cxm_profile_lookup_seconds",
    "Time to read a profile",
    ["by"],  # id, identifier
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
SCORES_APPLIED = Counter("cxm_profile_scores_applied_total", "Score snapshots stored", ["kind"])
OUTBOX_SENT = Counter(
    "cxm_profile_outbox_sent_total", "Outbox announcements (merges, unmerges, erasures) sent"
)
OUTBOX_FAILURES = Counter(
    "cxm_profile_outbox_failures_total", "Outbox drains that failed and were left for a retry"
)
BATCH_SIZE = Histogram(
    "cxm_profile_resolution_batch_size",
    "Touchpoints resolved per database transaction",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)
DECISIONS = Counter(
    "cxm_profile_decisions_total",
    "Personalisation decisions answered, by placement and what decided the content",
    ["placement", "source"],  # source: experiment, rule, default
)
DECISION_SECONDS = Histogram(
    "cxm_profile_decision_seconds",
    "Time to answer a personalisation decision (lookup, rules, exposure hand-off)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
EXPOSURES = Counter(
    "cxm_profile_experiment_exposures_total",
    "experiment_exposure touchpoints: sent (acknowledged by Kafka), repeated (already sent by "
    "this process for the customer, experiment and day), failed (not acknowledged: retried "
    "by the customer's next decision), dropped (too many sends in flight)",
    ["outcome"],
)
