"""The profile service's process: the profile API plus the identity-resolution worker."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import make_url

from cxm_profile.config import ProfileSettings
from cxm_profile.decisions.exposures import ExposureLog
from cxm_profile.decisions.views import router as decisions_router
from cxm_profile.errors import BadRequest, Conflict, NotFound
from cxm_profile.models import SCHEMA
from cxm_profile.profiles.views import router as profiles_router
from cxm_profile.stream.agents import Pipeline, register_agents
from cxm_profile.stream.outbox import OutboxRelay
from cxm_profile.worker import create_faust_app
from cxm_shared.db import db_reachable, make_engine, migrate
from cxm_shared.kafka import KafkaProbe, ensure_topics, make_producer
from cxm_shared.openapi import document_error_responses
from cxm_shared.outages import install_error_handlers
from cxm_shared.streaming import attach_prometheus_sensors, hosted, worker_ready
from cxm_shared.telemetry import health_router
from cxm_shared.topics import Topics

MIGRATIONS = Path(__file__).parent / "migrations"


def native_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as a plain libpq DSN for asyncpg."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def keep_session(connection: asyncpg.Connection) -> None:
    """The read pool's release step: nothing to send. Its connections only run single
    read-only statements (no session settings, cursors, listeners or advisory locks), and
    asyncpg's default reset query would be a second round trip on every lookup."""


def create_app(settings: ProfileSettings | None = None) -> FastAPI:
    settings = settings or ProfileSettings()
    topics = Topics(prefix=settings.topic_prefix)
    probe = KafkaProbe(settings.kafka_bootstrap)
    database_url = settings.database_url.get_secret_value()
    engine = make_engine(database_url, pool_size=settings.db_pool_size)
    faust_app = create_faust_app(settings)
    faust_registry = attach_prometheus_sensors(faust_app, name_prefix="cxm_profile_faust")
    pipeline = Pipeline(settings=settings, engine=engine, topics=topics)
    register_agents(faust_app, pipeline)
    outbox = OutboxRelay(engine=engine, interval=settings.outbox_interval_seconds)
    exposures = ExposureLog(producer=lambda: pipeline.producer, topics=topics)

    async def database_check() -> bool:
        return await db_reachable(engine)

    async def worker_check() -> bool:
        return worker_ready(faust_app)

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
        # aiokafka binds a producer to the running loop: build it here, not in create_app.
        producer = pipeline.producer = make_producer(
            settings.kafka_bootstrap, client_id="cxm-profile"
        )
        app.state.read_pool = await asyncpg.create_pool(
            native_dsn(database_url),
            min_size=1,
            max_size=settings.db_pool_size,
            reset=keep_session,
        )
        await producer.start()
        outbox.producer = producer
        outbox.start()  # announcements a previous process committed but could not send
        try:
            async with hosted(faust_app):
                # Everything built so far (modules, faust, pools, ~200k objects) lives as long
                # as the process: out of the collector's sight, a full collection no longer
                # stalls every request for tens to hundreds of milliseconds (the lookup p99).
                gc.collect()
                gc.freeze()
                yield
        finally:
            gc.unfreeze()  # an app in a test process: its objects may be collected again
            await exposures.close()  # experiment exposures still in flight
            await outbox.stop()
            await producer.stop()
            await app.state.read_pool.close()
            await probe.close()
            await engine.dispose()

    app = FastAPI(title="CXM profile API", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.faust = faust_app
    app.state.topics = topics
    app.state.pipeline = pipeline
    app.state.outbox = outbox
    app.state.api_tokens = settings.api_token_list()
    app.state.decision_rules = settings.decision_rules  # a bad rules file fails start-up
    app.state.exposures = exposures
    app.include_router(
        health_router(
            {"kafka": probe, "postgres": database_check, "worker": worker_check},
            extra_registries=[faust_registry],
        )
    )
    app.include_router(profiles_router)
    install_error_handlers(app)  # dependency down: 503; bad input: 422, not echoed
    document_error_responses(app)
    app.include_router(decisions_router)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, error: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=409)

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest) -> JSONResponse:
        detail = [{"loc": ["query", error.field], "msg": error.problem, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    return app
