"""The scoring service's process: the faust worker plus its health and metrics endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cxm_scoring.config import ScoringSettings
from cxm_scoring.insights.agents import insights_topic_name
from cxm_scoring.insights.views import router as insights_router
from cxm_scoring.sentiment import warm_up
from cxm_scoring.worker import app_id, base_stats_topic_name, create_faust_app, handoff_topic_name
from cxm_shared.kafka import KafkaProbe, ensure_topics
from cxm_shared.openapi import document_error_responses
from cxm_shared.outages import install_error_handlers
from cxm_shared.streaming import attach_prometheus_sensors, hosted, worker_ready
from cxm_shared.telemetry import health_router
from cxm_shared.topics import Topics, TopicSpec


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()
    topics = Topics(prefix=settings.topic_prefix)
    probe = KafkaProbe(settings.kafka_bootstrap)
    faust_app = create_faust_app(settings)
    faust_registry = attach_prometheus_sensors(faust_app, name_prefix="cxm_scoring_faust")

    async def worker_check() -> bool:
        return worker_ready(faust_app)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(
            settings.kafka_bootstrap,
            [
                *topics.all_specs(partitions=settings.topic_partitions),
                # The internal topics exist before faust subscribes: on a fresh cluster faust
                # would otherwise ignore the missing hand-off topic and never assign it, so
                # merges and erasures would not reach scoring state.
                TopicSpec(handoff_topic_name(settings), settings.topic_partitions),
                TopicSpec(base_stats_topic_name(settings), 1, compacted=True),
                TopicSpec(insights_topic_name(app_id(settings)), 1, compacted=True),
                TopicSpec(Topics.dlq(handoff_topic_name(settings)), 1),
            ],
            replication=settings.topic_replication,
        )
        # Build the sentiment analysers before consuming: the first feedback is not slow.
        await asyncio.to_thread(warm_up)
        async with hosted(faust_app):
            yield
        await probe.close()

    app = FastAPI(title="CXM scoring", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.faust = faust_app
    install_error_handlers(app)  # dependency down: 503; bad input: 422, not echoed
    document_error_responses(app)
    app.state.insights = faust_app.scorer.insights  # type: ignore[attr-defined]
    app.include_router(insights_router)
    app.include_router(
        health_router({"kafka": probe, "worker": worker_check}, extra_registries=[faust_registry])
    )
    return app
