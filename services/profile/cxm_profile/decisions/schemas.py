"""The decision API's answer (documents the route; the view serialises with orjson)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ExperimentAssignment(BaseModel):
    id: str
    variant: str
    exposure_event_id: str | None = Field(
        description="the experiment_exposure touchpoint logged for this decision: one per "
        "customer, experiment and UTC day"
    )


class DecisionOut(BaseModel):
    placement: str
    customer_id: str | None = Field(description="the live customer; null when not known")
    segments: list[str] = Field(description="the customer's current segments (from cx.scores)")
    content: dict[str, Any] = Field(description="the content variant to show; `id` names it")
    source: Literal["experiment", "rule", "default"]
    rule: str | None = Field(description="the rule that chose the content, if one did")
    experiment: ExperimentAssignment | None = None
