"""Logging, health and metrics endpoints shared by every service.

Logs are key=value lines; callers never pass raw personal data (emails, phones, names, free
text) or secrets into them. Metrics names are prefixed ``cxm_<service>_`` by each service's
own ``metrics.py``; this module adds only the endpoints.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

ReadinessCheck = Callable[[], Awaitable[bool]]


def configure_logging(*, service: str, level: str = "INFO") -> None:
    fmt = f"ts=%(asctime)s level=%(levelname)s service={service} logger=%(name)s %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every connection hiccup at ERROR while it reconnects by itself.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def health_router(
    checks: Mapping[str, ReadinessCheck],
    *,
    registry: CollectorRegistry = REGISTRY,
    extra_registries: Sequence[CollectorRegistry] = (),
) -> APIRouter:
    """``/healthz`` (process alive), ``/readyz`` (every dependency answers), ``/metrics``
    (the global registry plus ``extra_registries``, e.g. a faust app's own sensors)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: Kafka and, where used, PostgreSQL answer")
    async def readyz() -> JSONResponse:
        results = {name: await check() for name, check in checks.items()}
        ready = all(results.values())
        body = {
            "status": "ready" if ready else "unavailable",
            "checks": {k: "ok" if v else "failing" for k, v in results.items()},
        }
        headers = {} if ready else {"Retry-After": "5"}
        return JSONResponse(body, status_code=200 if ready else 503, headers=headers)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        body = b"".join(generate_latest(r) for r in (registry, *extra_registries))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
