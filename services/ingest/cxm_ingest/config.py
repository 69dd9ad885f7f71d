"""Settings of the ingest service (env prefix ``CXM_``, port ``CXM_INGEST_PORT``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from cxm_shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    service_name: str = "ingest"
    port: int = Field(
        default=8001, ge=1, le=65535, validation_alias=AliasChoices("CXM_INGEST_PORT")
    )
