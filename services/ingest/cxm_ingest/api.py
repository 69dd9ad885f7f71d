"""The ingest service's FastAPI app: touchpoint events over HTTP into Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cxm_ingest.config import IngestSettings
from cxm_shared.kafka import KafkaProbe, ensure_topics, make_producer
from cxm_shared.telemetry import health_router
from cxm_shared.topics import Topics


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    topics = Topics(prefix=settings.topic_prefix)
    probe = KafkaProbe(settings.kafka_bootstrap)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(
            settings.kafka_bootstrap,
            topics.all_specs(partitions=settings.topic_partitions),
            replication=settings.topic_replication,
        )
        producer = make_producer(settings.kafka_bootstrap, client_id="cxm-ingest")
        await producer.start()
        app.state.producer = producer
        try:
            yield
        finally:
            await producer.stop()
            await probe.close()

    app = FastAPI(title="CXM ingest", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.topics = topics
    app.include_router(health_router({"kafka": probe}))
    return app
