"""Alert API bodies."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from cxm_alerting.routing.matchers import ALERT_LABELS

# The label names a route can match on, so the API documents (and checks) them.
LabelName = Literal[
    "channel",
    "customer_id",
    "kind",
    "region",
    "segment",
    "severity",
    "team",
    "touchpoint",
    "value_tier",
]
assert set(get_args(LabelName)) == ALERT_LABELS, "LabelName must list ALERT_LABELS"


class ActorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1, max_length=128, description="who acts (user name or id)")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str = Field(min_length=1, max_length=128)


class RouteTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: dict[LabelName, str] = Field(
        description="alert labels: kind, severity, channel, touchpoint, segment, value_tier, "
        "region, customer_id"
    )


class AlertOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    alert_id: str
    kind: str
    severity: str | None
    status: str
    team: str
    receivers: list[str]
    labels: dict[str, str]
    assignee: str | None
    reason: str | None
    evidence: list[Any] | None
    scores: dict[str, Any] | None
    churn_reasons: list[Any] | None
    customer: dict[str, Any] | None
    last_touchpoints: list[dict[str, Any]] | None
    profile_url: str | None
