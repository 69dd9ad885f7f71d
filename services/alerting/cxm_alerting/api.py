"""The alerting service's process: alert API, SSE streams and console, signal consumer,
delivery worker and escalation loop (the one place where wiring happens)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse

from cxm_alerting import metrics
from cxm_alerting.alerts import service as alerts_service
from cxm_alerting.alerts.views import router as alerts_router
from cxm_alerting.config import AlertingSettings
from cxm_alerting.consumers import (
    TopicConsumer,
    journey_handler,
    record_decisions,
    signal_handler,
)
from cxm_alerting.delivery.worker import DeliveryWorker
from cxm_alerting.errors import AlertingError
from cxm_alerting.models import SCHEMA
from cxm_alerting.routing.errors import RoutingConfigError
from cxm_alerting.routing.tree import RoutingTree, load_tree
from cxm_alerting.silences.service import SilenceCache
from cxm_alerting.silences.views import router as silences_router
from cxm_alerting.stream.service import Wakeup
from cxm_alerting.stream.views import router as stream_router
from cxm_shared.db import db_reachable, make_engine, migrate
from cxm_shared.errors import ConfigurationError
from cxm_shared.kafka import KafkaProbe, ensure_topics, make_producer
from cxm_shared.openapi import document_error_responses
from cxm_shared.outages import install_error_handlers
from cxm_shared.telemetry import health_router
from cxm_shared.topics import Topics

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
CONSOLE = Path(__file__).parent / "console" / "index.html"


def load_routing(settings: AlertingSettings) -> RoutingTree:
    try:
        return load_tree(Path(settings.routing_config).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"routing_config: cannot read {settings.routing_config}") from exc
    except RoutingConfigError as exc:
        raise ConfigurationError(f"routing_config {settings.routing_config}:\n{exc}") from exc


async def escalation_loop(app: FastAPI) -> None:
    settings: AlertingSettings = app.state.settings
    while True:
        try:
            async with app.state.engine.begin() as conn:
                moved = await alerts_service.escalate_due(
                    conn=conn, tree=app.state.tree, now=datetime.now(UTC)
                )
            for escalation in moved:
                for team in escalation.breached_teams:
                    metrics.SLA_BREACHES.labels(team).inc()
            if moved:
                app.state.wakeup.notify()
            async with app.state.engine.connect() as conn:
                counts = await alerts_service.open_counts(conn=conn)
            for team in app.state.tree.receivers:
                metrics.OPEN_ALERTS.labels(team).set(counts.get(team, 0))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("escalation pass failed")
        await asyncio.sleep(settings.escalation_poll_seconds)


async def repeat_loop(app: FastAPI) -> None:
    """Reminders for alerts left open past their route's repeat_interval."""
    settings: AlertingSettings = app.state.settings
    while True:
        try:
            async with app.state.engine.begin() as conn:
                repeats = await alerts_service.repeat_due(
                    conn=conn, tree=app.state.tree, now=datetime.now(UTC)
                )
            for repeat in repeats:
                for team in repeat.receivers:
                    metrics.NOTIFICATIONS_REPEATED.labels(team).inc()
            if any(repeat.outbox for repeat in repeats):
                app.state.wakeup.notify()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("repeat pass failed")
        await asyncio.sleep(settings.repeat_poll_seconds)


def create_app(settings: AlertingSettings | None = None) -> FastAPI:
    settings = settings or AlertingSettings()
    topics = Topics(prefix=settings.topic_prefix)
    probe = KafkaProbe(settings.kafka_bootstrap)
    database_url = settings.database_url.get_secret_value()
    engine = make_engine(database_url)
    tree = load_routing(settings)
    wakeup = Wakeup()
    silence_cache = SilenceCache(refresh_seconds=settings.silence_refresh_seconds, engine=engine)

    async def database_check() -> bool:
        return await db_reachable(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(
            migrate, script_location=MIGRATIONS, url=database_url, schema=SCHEMA
        )
        await ensure_topics(
            settings.kafka_bootstrap,
            topics.all_specs(partitions=settings.topic_partitions),
            replication=settings.topic_replication,
        )
        producer = make_producer(settings.kafka_bootstrap, client_id="cxm-alerting")
        await producer.start()
        worker = DeliveryWorker(engine=engine, settings=settings, tree=tree, wakeup=wakeup)
        signals = TopicConsumer(
            name="signals",
            settings=settings,
            engine=engine,
            producer=producer,
            topics=[topics.signals],
            handler=signal_handler(
                settings=settings, tree=lambda: app.state.tree, silence_cache=silence_cache
            ),
            after_commit=lambda decisions: record_decisions(decisions, wakeup, worker),
        )
        journey = TopicConsumer(
            name="journey",
            settings=settings,
            engine=engine,
            producer=producer,
            topics=[topics.touchpoints_resolved, topics.identity_merges, topics.erasures],
            handler=journey_handler(settings=settings, topics=topics),
        )
        # Startup objects (modules, tables, compiled statements) never die: keep them out of
        # the cyclic GC's scans, which otherwise add pauses to the signal-to-webhook path.
        gc.freeze()
        tasks = [
            asyncio.create_task(worker.run(), name="delivery-worker"),
            asyncio.create_task(signals.run(), name="signal-consumer"),
            asyncio.create_task(journey.run(), name="journey-consumer"),
            asyncio.create_task(escalation_loop(app), name="escalation"),
            asyncio.create_task(repeat_loop(app), name="repeat"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await silence_cache.close()
            await producer.stop()
            await probe.close()
            await engine.dispose()

    app = FastAPI(
        title="CXM alerting",
        version="0.1.0",
        lifespan=lifespan,
        description="Churn-risk and negative-feedback alerts routed to teams: alert API, "
        "silences, route testing, per-team SSE streams and the support console (/console).",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.tree = tree
    app.state.wakeup = wakeup
    app.state.silence_cache = silence_cache
    app.include_router(health_router({"kafka": probe, "postgres": database_check}))
    app.include_router(alerts_router)
    app.include_router(silences_router)
    app.include_router(stream_router)
    install_error_handlers(app)  # dependency down: 503; bad input: 422, not echoed
    document_error_responses(app)

    @app.exception_handler(AlertingError)
    async def alerting_error(request: Request, exc: AlertingError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.get("/console", include_in_schema=False)
    async def console() -> FileResponse:
        return FileResponse(CONSOLE, media_type="text/html")

    return app
