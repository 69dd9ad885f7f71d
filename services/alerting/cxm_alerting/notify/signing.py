"""Standard Webhooks signatures (https://www.standardwebhooks.com).

The sender signs ``f"{webhook-id}.{webhook-timestamp}.{body}"`` with HMAC-SHA256 under the
shared secret (``whsec_`` + base64) and sends ``webhook-signature: v1,<base64 digest>``.
Receivers verify the signature and reject stale timestamps, which stops replays of captured
requests. Several space-separated signatures are allowed so secrets can be rotated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = timedelta(minutes=5)


class WebhookVerificationError(ValueError):
    """The request is not a valid, fresh, correctly signed webhook."""


def decode_secret(secret: str) -> bytes:
    """The HMAC key: the base64 part after ``whsec_`` (the prefix is optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Some providers hand out unpadded base64; padding it is harmless when already padded.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook secret is not valid base64") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(
    *, secret: str, msg_id: str, timestamp: datetime, body: bytes
) -> dict[str, str]:
    """Headers to send with ``body``; ``msg_id`` should be stable across retries of a message
    so receivers can deduplicate."""
    seconds = int(timestamp.timestamp())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": sign(secret=secret, msg_id=msg_id, timestamp=seconds, body=body),
    }


def verify(
    *,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Raise :class:`WebhookVerificationError` unless ``body`` is signed and fresh."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and raw_timestamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from exc
    age = now.timestamp() - timestamp
    if age > tolerance.total_seconds():
        raise WebhookVerificationError("message timestamp too old")
    if -age > tolerance.total_seconds():
        raise WebhookVerificationError("message timestamp too new")
    expected = sign(secret=secret, msg_id=msg_id, timestamp=timestamp, body=body)
    for candidate in signatures.split():
        version, _, _ = candidate.partition(",")
        # compare_digest keeps the comparison time independent of where strings differ.
        if version == "v1" and hmac.compare_digest(candidate.encode(), expected.encode()):
            return
    raise WebhookVerificationError("no matching signature")
