"""Notifiers: carry out one delivery attempt and report a :class:`DeliveryOutcome`; whether it
is retried is decided by :func:`cxm_alerting.notify.retry.decide_retry`."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import orjson

from cxm_alerting.config import AlertingSettings
from cxm_alerting.notify.payloads import (
    masked_identifiers,
    render_slack,
    render_slack_group,
    render_webhook,
    render_webhook_group,
)
from cxm_alerting.notify.retry import DeliveryOutcome
from cxm_alerting.notify.signing import signature_headers
from cxm_alerting.routing.schemas import EmailConfig, WebhookConfig


def _rendered(view: dict[str, Any], event: str) -> dict[str, Any]:
    return {**view, "status": "resolved" if event == "resolved" else "firing"}


async def send_webhook(
    *,
    client: httpx.AsyncClient,
    config: WebhookConfig,
    secret: str | None,
    msg_id: str,
    event: str,
    view: dict[str, Any],
    now: datetime,
    timeout: float,
) -> DeliveryOutcome:
    alert = _rendered(view, event)
    if config.slack_compatible:
        body_obj = render_slack(alert=alert)
    else:
        body_obj = render_webhook(alert=alert, sent_at=now)
        body_obj["type"] = f"alert.{event}"
        body_obj["data"]["event"] = event
        body_obj["data"]["team"] = view.get("team")
        body_obj["data"]["kind"] = view.get("kind")
    return await _post(
        client=client,
        config=config,
        secret=secret,
        msg_id=msg_id,
        body_obj=body_obj,
        now=now,
        timeout=timeout,
    )


async def send_webhook_group(
    *,
    client: httpx.AsyncClient,
    config: WebhookConfig,
    secret: str | None,
    msg_id: str,
    group_key: str,
    events: list[str],
    views: list[dict[str, Any]],
    now: datetime,
    timeout: float,
) -> DeliveryOutcome:
    """One signed notification for several alerts of an aggregation group."""
    alerts = [_rendered(v, e) for v, e in zip(views, events, strict=True)]
    if config.slack_compatible:
        body_obj = render_slack_group(alerts=alerts)
    else:
        body_obj = render_webhook_group(alerts=alerts, group_key=group_key, sent_at=now)
        for item, view, event in zip(body_obj["data"]["alerts"], views, events, strict=True):
            item.update(event=event, team=view.get("team"), kind=view.get("kind"))
    return await _post(
        client=client,
        config=config,
        secret=secret,
        msg_id=msg_id,
        body_obj=body_obj,
        now=now,
        timeout=timeout,
    )


async def _post(
    *,
    client: httpx.AsyncClient,
    config: WebhookConfig,
    secret: str | None,
    msg_id: str,
    body_obj: dict[str, Any],
    now: datetime,
    timeout: float,
) -> DeliveryOutcome:
    body = orjson.dumps(body_obj)
    headers = {"content-type": "application/json", "webhook-id": msg_id}
    if secret:
        headers.update(signature_headers(secret=secret, msg_id=msg_id, timestamp=now, body=body))
    else:
        headers["webhook-timestamp"] = str(int(now.timestamp()))
    try:
        response = await client.post(
            str(config.url), content=body, headers=headers, timeout=timeout
        )
    except httpx.TimeoutException:
        return DeliveryOutcome.timeout()
    except httpx.HTTPError:
        return DeliveryOutcome.connection_error()
    return DeliveryOutcome.response(
        response.status_code, retry_after=response.headers.get("retry-after")
    )


def email_message(
    *, config: EmailConfig, sender: str, msg_id: str, event: str, view: dict[str, Any]
) -> EmailMessage:
    labels = view.get("labels") or {}
    customer = view.get("customer") or {}
    message = EmailMessage()
    status = "RESOLVED" if event == "resolved" else event.upper()
    message["Subject"] = (
        f"[{status}] {view.get('kind')} ({labels.get('severity', '')}) for team {view.get('team')}"
    )
    message["From"] = sender
    message["To"] = ", ".join(config.to)
    message["Message-ID"] = f"<{msg_id}@cxm-alerting>"
    message["X-CXM-Alert-ID"] = view["alert_id"]
    lines = [
        f"{view.get('reason') or ''}",
        "",
        f"Alert: {view['alert_id']}  Status: {view.get('status')}  Team: {view.get('team')}",
        f"Customer: {customer.get('customer_id')}",
    ]
    identifiers = masked_identifiers(customer.get("identifiers") or {})
    if identifiers:
        lines.append("Identifiers: " + ", ".join(f"{k}={v}" for k, v in identifiers.items()))
    if view.get("scores"):
        lines.append("Scores: " + ", ".join(f"{k}={v}" for k, v in view["scores"].items()))
    for reason in view.get("churn_reasons") or []:
        lines.append(f"Churn-risk reason: {reason}")
    if view.get("last_touchpoints"):
        lines.append("")
        lines.append("Recent journey:")
        for t in view["last_touchpoints"]:
            lines.append(
                f"  {t.get('occurred_at')}  {t.get('channel')}  {t.get('touchpoint') or ''}"
                f"  {t.get('type')}"
            )
    if view.get("profile_url"):
        lines += ["", f"Profile: {view['profile_url']}"]
    message.set_content("\n".join(lines))
    return message


def group_email_message(
    *,
    config: EmailConfig,
    sender: str,
    msg_id: str,
    events: list[str],
    views: list[dict[str, Any]],
) -> EmailMessage:
    """One email for an aggregation group: each alert's section as in :func:`email_message`."""
    parts = [
        email_message(config=config, sender=sender, msg_id=msg_id, event=e, view=v)
        for v, e in zip(views, events, strict=True)
    ]
    message = EmailMessage()
    teams = sorted({str(v.get("team")) for v in views})
    message["Subject"] = f"[FIRING] {len(views)} alerts for team {', '.join(teams)}"
    message["From"] = sender
    message["To"] = ", ".join(config.to)
    message["Message-ID"] = f"<{msg_id}@cxm-alerting>"
    message["X-CXM-Alert-IDs"] = ", ".join(v["alert_id"] for v in views)
    sections = [f"{p['Subject']}\n\n{p.get_content().rstrip()}" for p in parts]
    message.set_content(("\n\n" + "-" * 60 + "\n\n").join(sections) + "\n")
    return message


async def send_email(
    *,
    settings: AlertingSettings,
    config: EmailConfig,
    msg_id: str,
    event: str,
    view: dict[str, Any],
    timeout: float,
    message: EmailMessage | None = None,
) -> DeliveryOutcome:
    message = message or email_message(
        config=config, sender=settings.smtp_from, msg_id=msg_id, event=event, view=view
    )
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            start_tls=settings.smtp_starttls,
            timeout=timeout,
        )
    except aiosmtplib.SMTPResponseException as exc:
        # SMTP 4yz is transient (retry like a 503); 5yz is permanent (like a 400).
        return DeliveryOutcome.response(503 if 400 <= exc.code < 500 else 400)
    except (TimeoutError, aiosmtplib.SMTPTimeoutError):
        return DeliveryOutcome.timeout()
    except (aiosmtplib.SMTPException, OSError):
        return DeliveryOutcome.connection_error()
    return DeliveryOutcome.response(200)  # the server accepted the message
