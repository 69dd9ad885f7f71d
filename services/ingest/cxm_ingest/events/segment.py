"""Segment Tracking API messages mapped onto the native event shape (pure, no I/O).

Mapping (what a Segment/RudderStack SDK sends -> what we publish):

- ``messageId`` -> ``event_id`` (the idempotency key; required).
- ``track`` -> ``type`` = the event name in snake case, with a few Segment spec names mapped
  onto our known types (``Order Completed`` -> ``purchase``, ``Experiment Viewed`` ->
  ``experiment_exposure``, ...); ``page`` -> ``page_view``; ``screen`` -> ``screen_view``;
  ``identify``/``group``/``alias`` keep their names.
- identifiers: ``anonymousId`` -> anonymous_id, ``userId`` -> user_id, ``traits.email`` or
  ``context.traits.email`` -> email (same for phone), ``context.device.id`` -> device_id,
  ``context.externalIds[{type, id}]`` -> any of our identifier types.
- ``context``/``integrations`` of a batch are merged under each message's own (message wins).
- time: ``occurred_at`` = client timestamp + (receivedAt - sentAt), the correction clamped to
  ``max_skew``; never later than receivedAt; receivedAt when the client sent no time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from cxm_shared.events import KNOWN_IDENTIFIER_TYPES

SEGMENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")
_NON_WORD = re.compile(r"[^a-z0-9]+")
SPEC_EVENTS = {
    "order_completed": "purchase",
    "experiment_viewed": "experiment_exposure",
    "product_reviewed": "review",
    "survey_responded": "survey_response",
    "survey_response": "survey_response",
}


class SegmentRejected(ValueError):
    def __init__(self, loc: str, msg: str) -> None:
        super().__init__(f"{loc}: {msg}")
        self.loc = loc
        self.msg = msg


def snake(name: str) -> str:
    out = _NON_WORD.sub("_", name.strip().lower()).strip("_")[:64]
    if not out or not out[0].isalpha():
        out = ("e_" + out)[:64].rstrip("_") or "e"
    return out


def parse_time(value: Any, loc: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SegmentRejected(loc, "must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00", 1) if value else value)
    except ValueError:
        raise SegmentRejected(loc, "is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def corrected_time(
    *, timestamp: datetime | None, sent_at: datetime | None, received_at: datetime, max_skew: float
) -> datetime:
    if timestamp is None:
        return received_at
    if sent_at is not None:
        skew = (received_at - sent_at).total_seconds()
        skew = max(-max_skew, min(max_skew, skew))
        timestamp = timestamp + timedelta(seconds=skew)
    return min(timestamp, received_at)


def _ident(value: Any, loc: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SegmentRejected(loc, "must be a string")
    return str(value)


def _dict(value: Any, loc: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SegmentRejected(loc, "must be an object")
    return value


def _order_completed(props: dict[str, Any]) -> dict[str, Any]:
    out = dict(props)
    if "amount" not in out:
        for name in ("total", "revenue", "value"):
            if name in props:
                out["amount"] = props[name]
                break
    if "items" not in out and isinstance(props.get("products"), list):
        out["items"] = [
            {
                "sku": p.get("sku") or p.get("product_id"),
                **{k: p[k] for k in ("category", "brand", "price", "quantity") if k in p},
            }
            for p in props["products"]
            if isinstance(p, dict)
        ]
        out.pop("products")
    return out


def _experiment_viewed(props: dict[str, Any]) -> dict[str, Any]:
    out = dict(props)
    out.setdefault("variant", props.get("variation_id") or props.get("variation_name"))
    return out


def to_native(
    message: Any,
    *,
    batch_context: dict[str, Any],
    batch_integrations: dict[str, Any],
    batch_sent_at: datetime | None,
    received_at: datetime,
    max_skew: float,
    forced_type: str | None = None,
) -> dict[str, Any]:
    """A native event dict (validated afterwards like any native event)."""
    if not isinstance(message, dict):
        raise SegmentRejected("", "must be an object")
    kind = forced_type or message.get("type")
    if kind not in SEGMENT_TYPES:
        raise SegmentRejected("type", f"must be one of {', '.join(SEGMENT_TYPES)}")
    message_id = message.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise SegmentRejected("messageId", "required string")

    context = {**_dict(batch_context, "context"), **_dict(message.get("context"), "context")}
    integrations = {
        **_dict(batch_integrations, "integrations"),
        **_dict(message.get("integrations"), "integrations"),
    }
    traits = dict(_dict(context.pop("traits", None), "context.traits"))
    traits.update(_dict(message.get("traits"), "traits"))
    properties = dict(_dict(message.get("properties"), "properties"))

    identifiers: dict[str, str] = {}
    for field, name in (("anonymousId", "anonymous_id"), ("userId", "user_id")):
        value = _ident(message.get(field), field)
        if value is not None:
            identifiers[name] = value
    for name in ("email", "phone"):
        value = traits.get(name)
        if isinstance(value, str) and value:
            identifiers[name] = value
    device = context.get("device")
    if isinstance(device, dict) and isinstance(device.get("id"), str) and device["id"]:
        identifiers["device_id"] = device["id"]
    external = context.get("externalIds")
    if isinstance(external, list):
        for i, ext in enumerate(external):
            if not isinstance(ext, dict):
                raise SegmentRejected(f"context.externalIds[{i}]", "must be an object")
            ext_type, ext_id = ext.get("type"), ext.get("id")
            if ext_type in KNOWN_IDENTIFIER_TYPES and isinstance(ext_id, str) and ext_id:
                identifiers.setdefault(ext_type, ext_id)

    if "userAgent" in context:
        context["user_agent"] = context.pop("userAgent")
    if integrations:
        context["integrations"] = integrations

    touchpoint = None
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise SegmentRejected("event", "required string for track")
        type_ = snake(event)
        type_ = SPEC_EVENTS.get(type_, type_)
        if type_ == "purchase":
            properties = _order_completed(properties)
        elif type_ == "experiment_exposure":
            properties = _experiment_viewed(properties)
        if isinstance(properties.get("touchpoint"), str):
            touchpoint = properties["touchpoint"]
    elif kind in ("page", "screen"):
        type_ = "page_view" if kind == "page" else "screen_view"
        name = message.get("name")
        if name is not None:
            if not isinstance(name, str):
                raise SegmentRejected("name", "must be a string")
            properties.setdefault("name", name)
            touchpoint = name[:128] or None
        if kind == "page" and "url" not in properties:
            page = context.get("page")
            if isinstance(page, dict) and isinstance(page.get("url"), str):
                properties["url"] = page["url"]
    elif kind == "group":
        group_id = _ident(message.get("groupId"), "groupId")
        if group_id is None:
            raise SegmentRejected("groupId", "required for group")
        type_ = "group"
        properties["group_id"] = group_id
    elif kind == "alias":
        previous = _ident(message.get("previousId"), "previousId")
        if previous is None:
            raise SegmentRejected("previousId", "required for alias")
        type_ = "alias"
        properties["previous_id"] = previous
    else:
        type_ = "identify"

    timestamp = parse_time(message.get("timestamp"), "timestamp") or parse_time(
        message.get("originalTimestamp"), "originalTimestamp"
    )
    sent_at = parse_time(message.get("sentAt"), "sentAt") or batch_sent_at
    occurred = corrected_time(
        timestamp=timestamp, sent_at=sent_at, received_at=received_at, max_skew=max_skew
    )
    event: dict[str, Any] = {
        "event_id": message_id,
        "type": type_,
        "occurred_at": occurred.isoformat(),
        "identifiers": identifiers,
        "traits": traits,
        "properties": properties,
        "context": context,
    }
    if touchpoint:
        event["touchpoint"] = touchpoint
    return event
