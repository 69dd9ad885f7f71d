"""Polling a condition in tests that drive whole services over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx


async def wait_until(
    check: Callable[[], Awaitable[Any]], *, timeout: float, what: str, every: float = 0.25
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds. A poll
    whose HTTP request failed in transit (a keep-alive connection the server closed as the
    request went out, a busy service resetting) counts as "not yet", not as the answer."""
    deadline = time.monotonic() + timeout
    failed: httpx.TransportError | None = None
    while True:
        try:
            result = await check()
        except httpx.TransportError as exc:
            result, failed = None, exc
        if result:
            return result
        if time.monotonic() > deadline:
            last = f" (last poll failed: {failed!r})" if failed is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{last}")
        await asyncio.sleep(every)
