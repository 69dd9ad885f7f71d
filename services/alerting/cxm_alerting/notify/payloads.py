"""Message bodies for the webhook channels: generic JSON and Slack-compatible blocks.

Input is the alert as the alert store renders it (a plain dict). Identifiers are masked here
again even if the caller already masked them: a payload leaves our boundary, so this is the
last place where a raw email or phone number could be stopped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

# Slack's documented limits; longer texts are rejected with invalid_blocks.
_SLACK_HEADER_MAX = 150
_SLACK_TEXT_MAX = 3000
_SLACK_FIELD_MAX = 2000
_SLACK_FIELDS_MAX = 10
_MAX_LIST_ITEMS = 5

_DIGITS = re.compile(r"\d")


def mask_identifier(*, kind: str, value: str) -> str:
    """Show just enough of an identifier for a human to recognise it; idempotent."""
    if kind == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "phone":
        digits = "".join(_DIGITS.findall(value))
        # Four digits are a hint, never a reachable number; fewer means it was already cut.
        return "***" + digits[-4:] if len(digits) >= 4 else "***"
    if len(value) <= 4:
        return "****"
    return "****" + value[-4:]


def masked_identifiers(identifiers: Mapping[str, str]) -> dict[str, str]:
    return {
        kind: mask_identifier(kind=kind, value=str(value))
        for kind, value in sorted(identifiers.items())
        if value
    }


def render_webhook(*, alert: Mapping[str, Any], sent_at: datetime) -> dict[str, Any]:
    """Generic JSON body, shaped as Standard Webhooks suggest: ``type``, ``timestamp``, ``data``."""
    status = alert.get("status", "firing")
    customer = alert.get("customer") or {}
    data = {
        "alert_id": alert["alert_id"],
        "status": status,
        "labels": dict(alert.get("labels") or {}),
        "reason": alert.get("reason", ""),
        "evidence": list(alert.get("evidence") or []),
        "scores": dict(alert.get("scores") or {}),
        "churn_reasons": list(alert.get("churn_reasons") or []),
        "customer": {
            "customer_id": customer.get("customer_id"),
            "identifiers": masked_identifiers(customer.get("identifiers") or {}),
        },
        "last_touchpoints": [dict(t) for t in alert.get("last_touchpoints") or []],
        "profile_url": alert.get("profile_url"),
        "starts_at": alert.get("starts_at"),
        "ends_at": alert.get("ends_at"),
    }
    return {"type": f"alert.{status}", "timestamp": sent_at.isoformat(), "data": data}


def render_slack(*, alert: Mapping[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook body: ``text`` (notification fallback) plus Block Kit ``blocks``."""
    labels: Mapping[str, str] = alert.get("labels") or {}
    status = str(alert.get("status", "firing")).upper()
    kind = labels.get("kind", "alert")
    severity = labels.get("severity", "")
    customer = alert.get("customer") or {}
    customer_id = customer.get("customer_id") or labels.get("customer_id") or ""
    reason = str(alert.get("reason", ""))

    title = f"[{status}] {kind}" + (f" ({severity})" if severity else "")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, _SLACK_HEADER_MAX)}},
    ]
    if reason:
        blocks.append(_section(_escape(reason)))
    fields = _label_fields(labels, customer_id) + _score_fields(alert.get("scores") or {})
    if fields:
        blocks.append({"type": "section", "fields": fields[:_SLACK_FIELDS_MAX]})
    identifiers = masked_identifiers(customer.get("identifiers") or {})
    if identifiers:
        rendered = ", ".join(f"{kind_}: `{_escape(v)}`" for kind_, v in identifiers.items())
        blocks.append(_section(f"*Identifiers*\n{rendered}"))
    for heading, items in (
        ("Churn-risk reasons", alert.get("churn_reasons") or []),
        ("Evidence", [_evidence_line(e) for e in alert.get("evidence") or []]),
        ("Last touchpoints", [_touchpoint_line(t) for t in alert.get("last_touchpoints") or []]),
    ):
        if items:
            blocks.append(_section(f"*{heading}*\n" + _bullets(items)))
    if alert.get("profile_url"):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open customer profile"},
                        "url": alert["profile_url"],
                    }
                ],
            }
        )
    context = [f"alert `{alert['alert_id']}`"]
    if alert.get("starts_at"):
        context.append(f"since {alert['starts_at']}")
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]}
    )
    text = title + (f" for customer {customer_id}" if customer_id else "")
    if reason:
        text += f": {reason}"
    return {"text": _cut(_escape(text), _SLACK_TEXT_MAX), "blocks": blocks}


def _escape(text: str) -> str:
    # Slack mrkdwn control characters; unescaped they can forge links or mentions.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, _SLACK_TEXT_MAX)}}


def _field(name: str, value: object) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(f"*{name}*\n{_escape(str(value))}", _SLACK_FIELD_MAX)}


def _label_fields(labels: Mapping[str, str], customer_id: str) -> list[dict[str, str]]:
    fields = [
        _field(name.replace("_", " ").capitalize(), labels[name])
        for name in ("severity", "channel", "touchpoint", "segment", "value_tier", "region")
        if labels.get(name)
    ]
    if customer_id:
        fields.append(_field("Customer", customer_id))
    return fields


def _score_fields(scores: Mapping[str, object]) -> list[dict[str, str]]:
    return [
        _field(name, f"{value:.2f}" if isinstance(value, float) else value)
        for name, value in sorted(scores.items())
    ]


def _evidence_line(item: object) -> str:
    if isinstance(item, Mapping):
        return ", ".join(f"{k}: {v}" for k, v in item.items())
    return str(item)


def _touchpoint_line(item: Mapping[str, Any]) -> str:
    parts = [item.get("occurred_at"), item.get("channel"), item.get("touchpoint"), item.get("type")]
    return " · ".join(str(p) for p in parts if p)


def _bullets(items: Sequence[object]) -> str:
    shown = [f"• {_escape(str(item))}" for item in items[:_MAX_LIST_ITEMS]]
    if len(items) > _MAX_LIST_ITEMS:
        shown.append(f"… and {len(items) - _MAX_LIST_ITEMS} more")
    return "\n".join(shown)


def render_webhook_group(
    *, alerts: Sequence[Mapping[str, Any]], group_key: str, sent_at: datetime
) -> dict[str, Any]:
    """One notification for an aggregation group (route with a group_wait): every alert's
    data as :func:`render_webhook` renders it, under ``data.alerts``."""
    items = [render_webhook(alert=a, sent_at=sent_at)["data"] for a in alerts]
    status = "firing" if any(i["status"] == "firing" for i in items) else "resolved"
    return {
        "type": "alert.group",
        "timestamp": sent_at.isoformat(),
        "data": {"status": status, "group_key": group_key, "count": len(items), "alerts": items},
    }


def render_slack_group(*, alerts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Slack body for a group: a summary line, then each alert's blocks (within Slack's
    50-block limit)."""
    blocks: list[dict[str, Any]] = []
    texts: list[str] = []
    for alert in alerts:
        single = render_slack(alert=alert)
        texts.append(single["text"])
        blocks.extend(single["blocks"])
    summary = f"{len(alerts)} alerts: " + "; ".join(texts)
    return {"text": _cut(summary, _SLACK_TEXT_MAX), "blocks": blocks[:50]}
