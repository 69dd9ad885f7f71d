"""Settings of the profile service (env prefix ``CXM_``, port ``CXM_PROFILE_PORT``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from cxm_shared.settings import ServiceSettings


class ProfileSettings(ServiceSettings):
    service_name: str = "profile"
    port: int = Field(
        default=8002, ge=1, le=65535, validation_alias=AliasChoices("CXM_PROFILE_PORT")
    )
    data_dir: str = ".data"
