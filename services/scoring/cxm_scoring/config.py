"""Settings of the scoring service (env prefix ``CXM_``, port ``CXM_SCORING_PORT``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from cxm_shared.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    service_name: str = "scoring"
    port: int = Field(
        default=8003, ge=1, le=65535, validation_alias=AliasChoices("CXM_SCORING_PORT")
    )
    # Where faust keeps local table stores (RocksDB in production, memory in tests).
    data_dir: str = ".data"
    table_store: str = "rocksdict://"
