"""The ingest service's FastAPI app: touchpoint events over HTTP into Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI, Request, Response

from cxm_ingest.auth import RateLimiter, WriteKeys
from cxm_ingest.config import IngestSettings
from cxm_ingest.errors import IngestError
from cxm_ingest.events.models import SCHEMA
from cxm_ingest.events.service import DedupStore, Publisher
from cxm_ingest.events.views import DirectRoutes, Intake, build_router, error_response
from cxm_shared.db import db_reachable, make_engine, migrate
from cxm_shared.errors import DependencyUnavailable
from cxm_shared.kafka import KafkaProbe, ensure_topics
from cxm_shared.openapi import document_error_responses
from cxm_shared.telemetry import health_router
from cxm_shared.topics import Topics

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"


async def _purge_loop(dedup: DedupStore, settings: IngestSettings) -> None:
    while True:
        try:
            removed = await dedup.purge(older_than=timedelta(days=settings.dedup_window_days))
            log.info("dedup purge removed=%d", removed)
        except Exception as exc:  # retried next round; the table only grows meanwhile
            log.warning("dedup purge failed error=%s", type(exc).__name__)
        await asyncio.sleep(settings.dedup_cleanup_interval_seconds)


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    topics = Topics(prefix=settings.topic_prefix)
    probe = KafkaProbe(settings.kafka_bootstrap)
    database_url = settings.database_url.get_secret_value()
    engine = make_engine(database_url)
    publisher = Publisher(
        settings.kafka_bootstrap,
        topics.touchpoints,
        timeout=settings.produce_timeout_seconds,
        retry_after=settings.retry_after_seconds,
    )
    intake = Intake(
        settings=settings,
        keys=WriteKeys(settings.write_key_entries()),
        limiter=RateLimiter(
            rate=settings.rate_limit_events_per_second, burst=settings.rate_limit_burst
        ),
        dedup=DedupStore(engine),
        publisher=publisher,
    )

    async def database_check() -> bool:
        return await db_reachable(engine)

    async def producer_check() -> bool:
        return publisher.ready

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(
            migrate, script_location=MIGRATIONS, url=database_url, schema=SCHEMA
        )
        try:
            await ensure_topics(
                settings.kafka_bootstrap,
                topics.all_specs(partitions=settings.topic_partitions),
                replication=settings.topic_replication,
            )
        except DependencyUnavailable as exc:
            # Come up anyway: requests get 503 + Retry-After until Kafka answers.
            log.warning("topics not ensured error=%s", exc)
        await publisher.start(wait=settings.produce_timeout_seconds)
        purger = asyncio.create_task(_purge_loop(intake.dedup, settings))
        try:
            yield
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            await intake.dedup.close()
            await publisher.stop()
            await probe.close()
            await engine.dispose()

    app = FastAPI(title="CXM ingest", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.topics = topics
    app.state.intake = intake

    @app.exception_handler(IngestError)
    async def ingest_error(request: Request, exc: IngestError) -> Response:
        return error_response(exc)

    router, handlers = build_router(intake)
    app.include_router(router)
    app.add_middleware(DirectRoutes, handlers=handlers)
    document_error_responses(
        app,
        extra={
            400: "invalid input (the message names the field)",
            413: "body, event or batch too large",
            415: "unsupported Content-Type or Content-Encoding",
            429: "rate limit of the write key's source; see Retry-After",
        },
    )
    app.include_router(
        health_router({"kafka": probe, "producer": producer_check, "postgres": database_check})
    )
    return app
