"""Settings of the scoring service (env prefix ``CXM_``, port ``CXM_SCORING_PORT``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from cxm_shared.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    service_name: str = "scoring"
    port: int = Field(
        default=8003, ge=1, le=65535, validation_alias=AliasChoices("port", "CXM_SCORING_PORT")
    )
    # Where faust keeps local table stores (RocksDB in production, memory in tests).
    data_dir: str = ".data"
    table_store: str = Field(
        default="rocksdict://",
        validation_alias=AliasChoices("table_store", "CXM_SCORING_TABLE_STORE", "CXM_TABLE_STORE"),
    )
    # BG/NBD parameters written by `python -m cxm_scoring fit-churn-model`; when unset or
    # missing, the published CDNOW estimates are used (see cxm_scoring.experience.churn_model).
    churn_model_path: str | None = None
    # Segment rules as JSON (a list of rules or {"segments": [...]}); unset: the built-in rules.
    segments_path: str | None = None
    # How often each worker republishes its partitions' base statistics (decile/RFM cuts).
    base_stats_interval_s: float = Field(default=300.0, gt=0)
    churn_high_threshold: float = Field(default=0.7, ge=0, le=1)
    churn_rising_delta: float = Field(default=0.2, gt=0, le=1)
