"""The profile service's process: the profile API plus the identity-resolution worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from cxm_profile.config import ProfileSettings
from cxm_profile.models import SCHEMA
from cxm_profile.worker import create_faust_app
from cxm_shared.db import db_reachable, make_engine, migrate
from cxm_shared.kafka import KafkaProbe, ensure_topics
from cxm_shared.streaming import hosted, worker_ready
from cxm_shared.telemetry import health_router
from cxm_shared.topics import Topics

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ProfileSettings | None = None) -> FastAPI:
    settings = settings or ProfileSettings()
    topics = Topics(prefix=settings.topic_prefix)
    probe = KafkaProbe(settings.kafka_bootstrap)
    database_url = settings.database_url.get_secret_value()
    engine = make_engine(database_url)
    faust_app = create_faust_app(settings)

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
        try:
            async with hosted(faust_app):
                yield
        finally:
            await probe.close()
            await engine.dispose()

    app = FastAPI(title="CXM profile API", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.faust = faust_app
    app.include_router(
        health_router({"kafka": probe, "postgres": database_check, "worker": worker_check})
    )
    return app
