"""The ingest service's exceptions; each maps to one HTTP answer (see ``api.py``)."""

from __future__ import annotations

from typing import Any

from cxm_shared.errors import CxmError


class IngestError(CxmError):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        self.headers: dict[str, str] = {}


class InvalidInput(IngestError):
    status_code = 400
    code = "invalid_input"


class Unauthorized(IngestError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": 'Basic realm="cxm-ingest"'}


class PayloadTooLarge(IngestError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(IngestError):
    status_code = 415
    code = "unsupported_media_type"


class RateLimited(IngestError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class KafkaUnavailable(IngestError):
    status_code = 503
    code = "kafka_unavailable"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}
