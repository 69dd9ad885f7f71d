"""Request and response bodies of the profile API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class MaskedIdentifier(BaseModel):
    type: str
    masked: str
    rule: str
    trust: str
    linked_at: datetime


class Trait(BaseModel):
    value: Any
    source: str
    channel: str
    updated_at: datetime


class Profile(BaseModel):
    customer_id: str
    created_at: datetime
    merged_ids: list[str] = Field(description="customer ids merged into this one")
    identifiers: list[MaskedIdentifier]
    traits: dict[str, Trait]
    segments: list[str]
    scores: dict[str, Any] | None


class UnmergeRequest(BaseModel):
    reason: str = Field(default="requested through the API", min_length=1, max_length=500)


class UnmergeResult(BaseModel):
    merge_id: str
    restored_customer_id: str
    split_from_customer_id: str
    unmerged_at: datetime


class QuarantineDecision(BaseModel):
    quarantine_id: str
    status: str
    merge_id: str | None = None
    customer_id: str | None = Field(default=None, description="the live customer after approval")


class Erasure(BaseModel):
    request_id: str
    erased_customer_ids: list[str]
