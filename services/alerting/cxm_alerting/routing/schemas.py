"""The YAML configuration as pydantic models: shape and per-field validation only.

Cross-references (receiver names, escalation chains) and inheritance are resolved in
:mod:`cxm_alerting.routing.tree`, which turns these models into the routing tree.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    field_validator,
)

from cxm_alerting.routing.durations import parse_duration
from cxm_alerting.routing.matchers import ALERT_LABELS, Matcher, parse_matcher

# group_by: ['...'] groups by every label, i.e. one group per distinct alert label set.
GROUP_BY_ALL = "..."

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _duration(value: object) -> object:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)  # type: ignore[arg-type]


def _matcher(value: object) -> object:
    if isinstance(value, Matcher):
        return value
    return parse_matcher(value)  # type: ignore[arg-type]


def _email(value: str) -> str:
    if _EMAIL.fullmatch(value) is None:
        raise ValueError(f"{value!r} is not an email address")
    return value


def _known_labels(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - ALERT_LABELS)
    if unknown:
        raise ValueError(
            f"unknown label(s) {', '.join(unknown)}; alert labels are: "
            + ", ".join(sorted(ALERT_LABELS))
        )
    if len(set(value)) != len(value):
        raise ValueError("duplicate label names")
    return value


# Validators sit on the item types so a bad entry is reported at its own index (matchers[2]).
Duration = Annotated[timedelta, BeforeValidator(_duration)]
MatcherItem = Annotated[Matcher, BeforeValidator(_matcher)]
EmailAddress = Annotated[str, AfterValidator(_email)]
LabelNames = Annotated[list[str], AfterValidator(_known_labels)]


class _Strict(BaseModel):
    # Unknown keys are errors: a misspelt "group_wiat" must not be ignored silently.
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class RouteConfig(_Strict):
    receiver: str | None = Field(default=None, min_length=1)
    matchers: list[MatcherItem] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    routes: list[RouteConfig] = Field(default_factory=list)

    @field_validator("group_by")
    @classmethod
    def _check_group_by(cls, value: list[str] | None) -> list[str] | None:
        if value is None or value == [GROUP_BY_ALL]:
            return value
        if GROUP_BY_ALL in value:
            raise ValueError("'...' groups by all labels and cannot be combined with names")
        return _known_labels(value)


class WebhookConfig(_Strict):
    url: HttpUrl
    # Name of the secret in the secret store / environment, never the secret itself: the YAML
    # lives in git.
    secret_ref: str | None = Field(default=None, min_length=1)
    slack_compatible: bool = False
    send_resolved: bool = True


class EmailConfig(_Strict):
    to: list[EmailAddress] = Field(min_length=1)
    send_resolved: bool = False


class ReceiverConfig(_Strict):
    name: str = Field(min_length=1)
    webhook_configs: list[WebhookConfig] = Field(default_factory=list)
    email_configs: list[EmailConfig] = Field(default_factory=list)
    sse: bool = False
    escalate_to: str | None = None
    ack_sla: Duration | None = None


class InhibitRuleConfig(_Strict):
    source_matchers: list[MatcherItem] = Field(min_length=1)
    target_matchers: list[MatcherItem] = Field(min_length=1)
    # Labels that must have the same value on source and target (absent equals absent).
    equal: LabelNames = Field(default_factory=list)


class AlertingConfig(_Strict):
    route: RouteConfig
    receivers: list[ReceiverConfig] = Field(min_length=1)
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
