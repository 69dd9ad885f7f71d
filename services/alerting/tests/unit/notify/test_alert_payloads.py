"""Generic JSON and Slack-compatible bodies rendered from an alert."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cxm_alerting.notify.payloads import mask_identifier, render_slack, render_webhook

SENT_AT = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


def make_alert(**overrides: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "alert_id": "0b6c2c3e-5d0f-5a57-9d0e-2f7d3c1a9b11",
        "status": "firing",
        "labels": {
            "kind": "churn_risk_high",
            "severity": "critical",
            "channel": "store",
            "segment": "at_risk",
            "value_tier": "gold",
            "customer_id": "cus_42",
        },
        "reason": "Churn risk rose to 0.82 after two delivery complaints",
        "evidence": ["NPS 3 on 2025-03-03", {"support_contacts_7d": 3}],
        "scores": {"churn_risk": 0.8234, "nps": 3},
        "churn_reasons": ["purchase gap 3x usual", "negative sentiment in chat"],
        "customer": {
            "customer_id": "cus_42",
            "identifiers": {
                "email": "taro.yamada@example.co.jp",
                "phone": "+81 90-1234-5678",
                "loyalty_id": "LOY-00998877",
            },
        },
        "last_touchpoints": [
            {"occurred_at": "2025-03-03T10:00:00Z", "channel": "call_center", "type": "support"}
        ],
        "profile_url": "http://127.0.0.1:8002/v1/customers/cus_42",
        "starts_at": "2025-03-04T11:59:00Z",
    }
    alert.update(overrides)
    return alert


@pytest.mark.parametrize(
    ("kind", "value", "masked"),
    [
        ("email", "taro.yamada@example.co.jp", "t***@example.co.jp"),
        ("phone", "+81 90-1234-5678", "***5678"),
        ("loyalty_id", "LOY-00998877", "****8877"),
        ("device_id", "abc", "****"),
        ("phone", "12", "***"),
    ],
)
def test_mask_identifier_hides_all_but_a_hint(kind: str, value: str, masked: str) -> None:
    assert mask_identifier(kind=kind, value=value) == masked
    # Masking an already-masked value changes nothing, so callers may mask early.
    assert mask_identifier(kind=kind, value=masked) == masked


def test_webhook_body_carries_the_alert_and_no_raw_identifiers() -> None:
    body = render_webhook(alert=make_alert(), sent_at=SENT_AT)

    assert body["type"] == "alert.firing"
    assert body["timestamp"] == "2025-03-04T12:00:00+00:00"
    data = body["data"]
    assert data["customer"]["identifiers"] == {
        "email": "t***@example.co.jp",
        "loyalty_id": "****8877",
        "phone": "***5678",
    }
    assert data["scores"]["churn_risk"] == pytest.approx(0.8234)
    assert data["churn_reasons"][0] == "purchase gap 3x usual"
    text = json.dumps(body)
    for raw in ("taro.yamada", "1234-5678", "00998877"):
        assert raw not in text


def test_resolved_webhook_type() -> None:
    assert render_webhook(alert=make_alert(status="resolved"), sent_at=SENT_AT)["type"] == (
        "alert.resolved"
    )


def test_slack_body_has_fallback_text_and_blocks() -> None:
    body = render_slack(alert=make_alert())

    assert body["text"].startswith("[FIRING] churn_risk_high (critical) for customer cus_42")
    blocks = body["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[FIRING] churn_risk_high (critical)"},
    }
    types = [block["type"] for block in blocks]
    assert types[-2:] == ["actions", "context"]
    assert blocks[-2]["elements"][0]["url"] == "http://127.0.0.1:8002/v1/customers/cus_42"
    rendered = json.dumps(body, ensure_ascii=False)
    assert "0.82" in rendered and "purchase gap 3x usual" in rendered
    assert "support_contacts_7d: 3" in rendered
    assert "taro.yamada" not in rendered and "t***@example.co.jp" in rendered


def test_slack_escapes_control_characters_and_respects_limits() -> None:
    alert = make_alert(
        reason="<!channel> & <https://evil.example|click>",
        labels={"kind": "k" * 300},
        churn_reasons=[f"reason {i}" for i in range(8)],
    )

    body = render_slack(alert=alert)

    rendered = json.dumps(body, ensure_ascii=False)
    assert "<!channel>" not in rendered
    assert "&lt;!channel&gt; &amp;" in rendered
    assert len(blocks_header(body)) <= 150
    assert "… and 3 more" in rendered
    fields = [b for b in body["blocks"] if "fields" in b]
    assert all(len(b["fields"]) <= 10 for b in fields)


def blocks_header(body: dict[str, Any]) -> str:
    return str(body["blocks"][0]["text"]["text"])


def test_slack_body_for_a_sparse_alert() -> None:
    body = render_slack(alert={"alert_id": "a1", "labels": {"kind": "detractor"}})

    assert body["text"] == "[FIRING] detractor"
    assert [b["type"] for b in body["blocks"]] == ["header", "context"]
