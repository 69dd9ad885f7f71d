"""``python -m cxm_ingest``: run the ingest service.

With ``CXM_INGEST_WORKERS`` > 1, uvicorn runs that many worker processes on the one port,
each building its own app (:func:`worker_app`), and SIGTERM stops them all gracefully.
Migrations run once here first, so the workers' own start-up finds the schema at head
instead of racing each other to create it.
"""

from __future__ import annotations

import gc

import uvicorn
from fastapi import FastAPI

from cxm_ingest.api import MIGRATIONS, create_app
from cxm_ingest.config import IngestSettings
from cxm_ingest.events.models import SCHEMA
from cxm_shared.db import migrate
from cxm_shared.runner import serve
from cxm_shared.telemetry import configure_logging


def tune_gc() -> None:
    """Move what start-up built out of the collector's way and collect young objects less
    often: a 500-event batch allocates tens of thousands of short-lived objects, and with the
    default threshold (700) the collector ran every few events and rescanned the ~100k
    long-lived objects of the imported libraries (~15 % of the CPU of a batch, measured)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn imports this by name in each worker)."""
    settings = IngestSettings()
    configure_logging(service=settings.service_name, level=settings.log_level)
    app = create_app(settings)
    tune_gc()
    return app


def main() -> None:
    settings = IngestSettings()
    if settings.workers == 1:
        app = create_app(settings)
        tune_gc()
        serve(app, settings)
        return
    configure_logging(service=settings.service_name, level=settings.log_level)
    migrate(script_location=MIGRATIONS, url=settings.database_url.get_secret_value(), schema=SCHEMA)
    uvicorn.run(
        "cxm_ingest.__main__:worker_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
