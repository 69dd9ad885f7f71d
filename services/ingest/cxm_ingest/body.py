"""Reading a request body without ever holding more than the limit in memory.

The cap is enforced three times: on ``Content-Length`` before reading anything, on the raw
bytes while they stream in, and on the decompressed bytes while gzip inflates them (so a
small gzip bomb is stopped after ``limit`` bytes of output, not after gigabytes).
"""

from __future__ import annotations

import zlib

from starlette.requests import Request

from cxm_ingest.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

JSON_TYPES = ("application/json",)
# analytics.js sends beacons as text/plain; Segment accepts them, so do we on Segment routes.
SEGMENT_TYPES = ("application/json", "text/plain")


def check_content_type(request: Request, *, allowed: tuple[str, ...]) -> None:
    raw = request.headers.get("content-type")
    if raw is None:
        raise UnsupportedMediaType(f"Content-Type: missing; send one of {', '.join(allowed)}")
    media = raw.split(";", 1)[0].strip().lower()
    if media not in allowed and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(
            f"Content-Type: {media[:64]!r} is not supported; send one of {', '.join(allowed)}"
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise UnsupportedMediaType(
            f"Content-Encoding: {encoding[:32]!r} is not supported; use gzip or none"
        )


async def read_body(request: Request, *, limit: int, what: str) -> bytes:
    """The request body, decompressed, or :class:`PayloadTooLarge` once it passes ``limit``."""
    too_large = PayloadTooLarge(f"body: {what} is larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large
        except ValueError:
            raise InvalidInput("Content-Length: not an integer") from None
    gzipped = request.headers.get("content-encoding", "").strip().lower() == "gzip"
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if gzipped else None
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        if inflater is None:
            size += len(chunk)
            if size > limit:
                raise too_large
            parts.append(chunk)
            continue
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, limit + 1 - size)
            except zlib.error:
                raise InvalidInput("body: not valid gzip data") from None
            size += len(out)
            if size > limit:
                raise too_large
            parts.append(out)
            data = inflater.unconsumed_tail
        if inflater.eof and inflater.unused_data:
            raise InvalidInput("body: trailing data after the gzip stream")
    if inflater is not None:
        if not inflater.eof:
            raise InvalidInput("body: truncated gzip data")
    return b"".join(parts)
