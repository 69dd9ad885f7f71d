"""Incoming event shapes of the native API (``POST /v1/events``, ``/v1/events/batch``).

The envelope is checked for every event; ``properties`` are checked against a typed schema
for the known event types and left free (but bounded) for custom types. Extra property keys
are kept: channel systems send more than we model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from cxm_shared.events import KNOWN_IDENTIFIER_TYPES

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
# Opaque client ids (UUIDs, "ajs-next-...", order numbers): letters, digits and . _ : + = @ -
EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+=@-]{0,127}$")]
Text = Annotated[str, StringConstraints(max_length=10_000)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00]+$")]
Money = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Identifiers(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    anonymous_id: Identifier | None = None
    device_id: Identifier | None = None
    cookie_id: Identifier | None = None
    user_id: Identifier | None = None
    email: Identifier | None = None
    phone: Identifier | None = None
    loyalty_id: Identifier | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> Identifiers:
        if not any(getattr(self, name) for name in KNOWN_IDENTIFIER_TYPES):
            raise ValueError(f"at least one of {', '.join(KNOWN_IDENTIFIER_TYPES)} is required")
        return self


class Page(Strict):
    url: Annotated[str, StringConstraints(max_length=4096)] | None = None
    referrer: Annotated[str, StringConstraints(max_length=4096)] | None = None


class Experiment(Strict):
    id: Short
    variant: Short


class Context(Strict):
    locale: Short | None = None
    user_agent: Annotated[str, StringConstraints(max_length=1024)] | None = None
    ip: Annotated[str, StringConstraints(max_length=64)] | None = None
    page: Page | None = None
    experiment: Experiment | None = None


class Item(Strict):
    sku: Short
    category: Short | None = None
    brand: Short | None = None
    price: Money | None = None
    quantity: Annotated[int, Field(ge=1, le=1_000_000)] = 1


class SurveyResponse(Strict):
    survey_id: Short | None = None
    nps: Annotated[int, Field(ge=0, le=10)] | None = None
    csat: Annotated[int, Field(ge=1, le=5)] | None = None
    ces: Annotated[int, Field(ge=1, le=5)] | None = None
    comment: Text | None = None

    @model_validator(mode="after")
    def _answers_something(self) -> SurveyResponse:
        if self.nps is None and self.csat is None and self.ces is None and not self.comment:
            raise ValueError("a survey response needs nps, csat, ces or comment")
        return self


class Purchase(Strict):
    order_id: Short
    amount: Money
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    items: Annotated[list[Item], Field(max_length=1000)] = []


class CartAbandon(Strict):
    cart_id: Short | None = None
    amount: Money | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    items: Annotated[list[Item], Field(max_length=1000)] = []


class SupportContact(Strict):
    reason: Short
    wait_seconds: Annotated[float, Field(ge=0, le=7 * 86400, allow_inf_nan=False)] | None = None
    resolved: bool | None = None


class Feedback(Strict):
    comment: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    rating: Annotated[int, Field(ge=1, le=5)] | None = None


class PageView(Strict):
    url: Annotated[str, StringConstraints(max_length=4096)] | None = None
    title: Annotated[str, StringConstraints(max_length=1024)] | None = None


class ScreenView(Strict):
    name: Short | None = None


class StoreVisit(Strict):
    store_id: Short
    duration_seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class Payment(Strict):
    amount: Money
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    method: Short | None = None
    status: Short | None = None
    order_id: Short | None = None


class Delivery(Strict):
    order_id: Short
    status: Short
    delayed: bool | None = None


class Return(Strict):
    order_id: Short
    reason: Short | None = None
    amount: Money | None = None
    kind: Annotated[str, StringConstraints(pattern=r"^(return|repair|exchange)$")] = "return"


class Review(Strict):
    rating: Annotated[int, Field(ge=1, le=5)]
    comment: Text | None = None
    site: Short | None = None


class ExperimentExposure(Strict):
    experiment_id: Short
    variant: Short


PROPERTIES_BY_TYPE: dict[str, type[Strict]] = {
    "survey_response": SurveyResponse,
    "purchase": Purchase,
    "cart_abandon": CartAbandon,
    "support_contact": SupportContact,
    "feedback": Feedback,
    "page_view": PageView,
    "screen_view": ScreenView,
    "store_visit": StoreVisit,
    "payment": Payment,
    "delivery": Delivery,
    "return": Return,
    "review": Review,
    "experiment_exposure": ExperimentExposure,
}


class NativeEvent(BaseModel):
    """One event as a channel system posts it (fields of DESIGN.md's event contract)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    event_id: EventId
    type: Name
    channel: Name | None = Field(default=None, description="defaults to the write key's channel")
    touchpoint: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    occurred_at: Annotated[datetime, Field(strict=False)]
    identifiers: Identifiers
    traits: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    context: Context = Context()

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _rfc3339_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be an RFC 3339 string with a timezone offset")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _with_offset(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must include a timezone offset")
        return value
