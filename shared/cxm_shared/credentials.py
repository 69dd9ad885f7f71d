"""Comparing a presented credential with the configured ones without a timing side channel.

Both sides are hashed first, so ``hmac.compare_digest`` always compares 32 bytes (the time
tells nothing about the length or a matching prefix), every configured secret is compared
(no early exit: the time does not tell which one matched, or how many exist), and any text,
non-ASCII included, is accepted (``compare_digest`` refuses non-ASCII ``str``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def matches_any(presented: str | None, configured: Iterable[str]) -> bool:
    """True when ``presented`` equals one of ``configured`` (an empty one never matches)."""
    given = digest(presented or "")
    matched = False
    for secret in configured:
        matched |= hmac.compare_digest(given, digest(secret))
    return bool(presented) and matched
