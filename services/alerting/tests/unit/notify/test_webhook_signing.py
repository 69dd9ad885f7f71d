"""Standard Webhooks signing: the spec's test vector, the reference library, and verification."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks

from cxm_alerting.notify.signing import (
    WebhookVerificationError,
    decode_secret,
    sign,
    signature_headers,
    verify,
)

# The example published with the Standard Webhooks specification (also Svix's test vector).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(b"cxm-alerting-test-secret-32bytes").decode()
BODY = '{"type":"alert.firing","data":{"alert_id":"a1","reason":"顧客の解約リスク"}}'.encode()


def test_reproduces_the_specification_vector() -> None:
    signature = sign(secret=SPEC_SECRET, msg_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY)

    assert signature == SPEC_SIGNATURE


def test_spec_vector_verifies_within_tolerance() -> None:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    signed_at = datetime.fromtimestamp(SPEC_TIMESTAMP, tz=UTC)

    verify(secret=SPEC_SECRET, headers=headers, body=SPEC_BODY, now=signed_at)


def test_reference_library_accepts_our_signature() -> None:
    # The library checks the timestamp against the wall clock, so sign "now".
    now = datetime.now(tz=UTC)
    headers = signature_headers(secret=SECRET, msg_id="msg_1", timestamp=now, body=BODY)

    payload = standardwebhooks.Webhook(SECRET).verify(BODY, headers)

    assert payload["data"]["alert_id"] == "a1"


def test_we_accept_the_reference_library_signature() -> None:
    now = datetime.now(tz=UTC)
    signature = standardwebhooks.Webhook(SECRET).sign("msg_2", now, BODY.decode())
    headers = {
        "Webhook-Id": "msg_2",  # header names are case-insensitive
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": signature,
    }

    verify(secret=SECRET, headers=headers, body=BODY, now=now)


def test_round_trip_and_tampering() -> None:
    now = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    headers = signature_headers(secret=SECRET, msg_id="msg_3", timestamp=now, body=BODY)

    verify(secret=SECRET, headers=headers, body=BODY, now=now + timedelta(seconds=30))
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(secret=SECRET, headers=headers, body=BODY + b" ", now=now)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(secret=SECRET, headers={**headers, "webhook-id": "msg_4"}, body=BODY, now=now)
    other = "whsec_" + base64.b64encode(b"another-secret").decode()
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(secret=other, headers=headers, body=BODY, now=now)


def test_timestamp_tolerance_stops_replays_and_clock_skew() -> None:
    now = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    headers = signature_headers(secret=SECRET, msg_id="msg_5", timestamp=now, body=BODY)

    verify(secret=SECRET, headers=headers, body=BODY, now=now + timedelta(minutes=5))
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(secret=SECRET, headers=headers, body=BODY, now=now + timedelta(minutes=5, seconds=1))
    with pytest.raises(WebhookVerificationError, match="too new"):
        verify(secret=SECRET, headers=headers, body=BODY, now=now - timedelta(minutes=6))
    verify(
        secret=SECRET,
        headers=headers,
        body=BODY,
        now=now + timedelta(minutes=9),
        tolerance=timedelta(minutes=10),
    )


def test_rotated_secrets_any_v1_signature_may_match() -> None:
    now = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    old = "whsec_" + base64.b64encode(b"old-secret-value").decode()
    headers = signature_headers(secret=SECRET, msg_id="msg_6", timestamp=now, body=BODY)
    old_signature = sign(secret=old, msg_id="msg_6", timestamp=int(now.timestamp()), body=BODY)
    headers["webhook-signature"] = f"v1a,ignored {old_signature} {headers['webhook-signature']}"

    verify(secret=SECRET, headers=headers, body=BODY, now=now)
    verify(secret=old, headers=headers, body=BODY, now=now)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing"),
        ({"webhook-id": "m", "webhook-timestamp": "soon", "webhook-signature": "v1,x"}, "integer"),
    ],
)
def test_malformed_headers_are_rejected(headers: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookVerificationError, match=message):
        verify(secret=SECRET, headers=headers, body=BODY, now=datetime.now(tz=UTC))


def test_secret_decoding() -> None:
    assert decode_secret(SPEC_SECRET) == decode_secret(SPEC_SECRET.removeprefix("whsec_"))
    assert decode_secret("whsec_" + base64.b64encode(b"abcd").decode().rstrip("=")) == b"abcd"
    with pytest.raises(ValueError, match="base64"):
        decode_secret("whsec_not*base64")
    with pytest.raises(ValueError, match="empty"):
        decode_secret("whsec_")
