"""``python -m cxm_<service>``: serve a service's FastAPI app with uvicorn.

uvicorn turns SIGTERM/SIGINT into a graceful shutdown: in-flight requests finish, then the
app's lifespan closes its Kafka clients, database pools and faust worker.
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from cxm_shared.settings import ServiceSettings
from cxm_shared.telemetry import configure_logging


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    configure_logging(service=settings.service_name, level=settings.log_level)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
        lifespan="on",
    )
