"""Write keys (held only as SHA-256 digests, compared in constant time) and per-key rate limits.

A key identifies a *source* (one channel system) and the channel its events default to.
Failing here is always the client's fault (401, 429): nothing transient can make a valid key
look invalid, because the key table is in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import time
from dataclasses import dataclass

from cxm_ingest.errors import RateLimited, Unauthorized


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    channel: str


class WriteKeys:
    def __init__(self, entries: list[tuple[str, str, str]]) -> None:
        self._entries = [(bytes.fromhex(d), Source(s, c)) for s, c, d in entries]

    def authenticate(self, key: str | None) -> Source:
        if not key:
            raise Unauthorized("write key: missing (HTTP Basic user or writeKey in the body)")
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found: Source | None = None
        # Compare against every entry so timing does not tell how many keys exist or matched.
        for stored, source in self._entries:
            if hmac.compare_digest(stored, digest):
                found = source
        if found is None:
            raise Unauthorized("write key: not valid")
        return found


def key_from_authorization(header: str | None) -> str | None:
    """The write key of ``Basic base64(key:)`` or ``Bearer key``; None when absent."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme != "basic":
        raise Unauthorized("Authorization: use Basic (write key as user) or Bearer")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("Authorization: Basic credentials are not valid base64") from None
    user, _, _password = decoded.partition(":")
    return user or None


class RateLimiter:
    """A token bucket per source, in events; refills continuously."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, source: str, count: int) -> None:
        now = time.monotonic()
        tokens, last = self._buckets.get(source, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if count > tokens:
            self._buckets[source] = (tokens, now)
            wait = (min(count, self._burst) - tokens) / self._rate
            raise RateLimited(
                f"rate limit: source {source!r} is over {self._rate:g} events/s",
                retry_after=max(1, math.ceil(wait)),
            )
        self._buckets[source] = (tokens - count, now)
