"""Settings of the alerting service (env prefix ``CXM_``, port ``CXM_ALERTING_PORT``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from cxm_shared.settings import ServiceSettings


class AlertingSettings(ServiceSettings):
    service_name: str = "alerting"
    port: int = Field(
        default=8004, ge=1, le=65535, validation_alias=AliasChoices("CXM_ALERTING_PORT")
    )
