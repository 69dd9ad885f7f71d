"""Settings of the scoring service (env prefix ``CXM_``, port ``CXM_SCORING_PORT``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from cxm_shared.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    service_name: str = "scoring"
    port: int = Field(
        default=8003, ge=1, le=65535, validation_alias=AliasChoices("port", "CXM_SCORING_PORT")
    )
    # Where faust keeps local table stores: "rocksdb://" is faust's RocksDB store, which uses
    # rocksdict when it is installed (it is); "memory://" in tests.
    data_dir: str = ".data"
    table_store: str = Field(
        default="rocksdb://",
        validation_alias=AliasChoices("table_store", "CXM_SCORING_TABLE_STORE", "CXM_TABLE_STORE"),
    )
    # BG/NBD parameters written by `python -m cxm_scoring fit-churn-model`; when unset or
    # missing, the published CDNOW estimates are used (see cxm_scoring.experience.churn_model).
    churn_model_path: str | None = None
    # Segment rules as JSON (a list of rules or {"segments": [...]}); unset: the built-in rules.
    segments_path: str | None = None
    # How often each worker republishes its partitions' base statistics (decile/RFM cuts).
    base_stats_interval_s: float = Field(default=300.0, gt=0)
    # The scorer consumes in batches: per batch, each customer's state is loaded once, written
    # once and published once (the latest snapshot). A batch closes when full or after
    # batch_within_s; offsets are acknowledged only once the whole batch is processed.
    batch_max_events: int = Field(default=2000, ge=1)
    batch_within_s: float = Field(default=0.05, gt=0)
    # Outputs (snapshots, signals, changelog) wait this long to share produce requests.
    producer_linger_s: float = Field(default=0.005, ge=0)
    # Decoded states kept in process (the table holds the serialised form for the changelog).
    state_cache_size: int = Field(default=100_000, ge=0)
    # Consumer group liveness: how soon a killed worker's partitions move to another one.
    broker_session_timeout_s: float = Field(default=60.0, gt=0)
    broker_heartbeat_interval_s: float = Field(default=3.0, gt=0)
    churn_high_threshold: float = Field(default=0.7, ge=0, le=1)
    churn_rising_delta: float = Field(default=0.2, gt=0, le=1)
    # CX insights (cxm_scoring.insights): funnels, key drivers and experiment settings as YAML
    # (unset: insights/default.yaml); how often each worker publishes its partitions' insight
    # statistics; answers a driver needs with and without it to be estimated.
    insights_config_path: str | None = Field(
        default=None,
        validation_alias=AliasChoices("insights_config_path", "CXM_INSIGHTS_CONFIG"),
    )
    insights_enabled: bool = True
    insights_publish_interval_s: float = Field(default=5.0, gt=0)
    insights_min_observations: int = Field(default=10, ge=2)
