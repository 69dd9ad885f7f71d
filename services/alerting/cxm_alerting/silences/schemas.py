"""Silences API bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    matchers: list[str] = Field(
        min_length=1, description='Alertmanager matchers, e.g. kind="detractor"'
    )
    starts_at: AwareDatetime | None = Field(default=None, description="default: now")
    ends_at: AwareDatetime
    created_by: str = Field(min_length=1, max_length=128)
    comment: str = Field(min_length=1, max_length=2000)


class SilenceOut(BaseModel):
    id: str
    matchers: list[str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    state: str
