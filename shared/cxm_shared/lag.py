"""Consumer lag of the platform's consumer groups, for Prometheus.

``python -m cxm_shared.lag`` serves ``/metrics``, ``/healthz`` and ``/readyz`` on
``CXM_LAG_EXPORTER_PORT`` (8005). Every ``CXM_LAG_POLL_SECONDS`` it asks the cluster for the
committed offsets of every platform consumer group (names starting ``<CXM_TOPIC_PREFIX>cxm``:
the faust apps ``cxm-profile`` and ``cxm-scoring``, alerting's ``cxm-alerting.*``) and for the
end offsets of every platform topic (``cx.*``, ``cxm-*``, their ``.dlq``), and exports:

- ``cxm_kafka_consumer_lag_messages{group,topic,partition}``: end offset minus committed
  offset, i.e. messages written but not yet processed by that group;
- ``cxm_kafka_consumer_committed_offset{group,topic,partition}``;
- ``cxm_kafka_topic_end_offset{topic,partition}``: messages ever appended (for ``*.dlq``
  topics: dead letters, whichever service wrote them);
- ``cxm_kafka_lag_polls_total{outcome}``, ``cxm_kafka_lag_poll_seconds`` and
  ``cxm_kafka_lag_last_success_timestamp_seconds`` about the exporter itself.

Neither the broker's JMX metrics nor the services have this view: a service sees only the
partitions it owns, and a stopped service exports nothing while its lag grows. Group and
topic labels carry the logical names (the deployment's topic prefix removed), so dashboards
and alerts are the same for every deployment. Labels stay bounded: platform groups x platform
topics x partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cxm_shared.telemetry import configure_logging, health_router

log = logging.getLogger(__name__)

GROUP_STEM = "cxm"
TOPIC_STEMS = ("cx.", "cxm-")


class LagExporterSettings(BaseSettings):
    """Not a :class:`ServiceSettings`: the exporter holds no credentials to refuse."""

    model_config = SettingsConfigDict(env_prefix="CXM_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(
        default=8005, ge=1, le=65535, validation_alias=AliasChoices("CXM_LAG_EXPORTER_PORT")
    )
    log_level: str = "INFO"
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    lag_poll_seconds: float = Field(default=5.0, gt=0)


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    """Offsets as of one poll, keyed by logical names."""

    end_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def lags(self) -> Iterator[tuple[str, str, int, int]]:
        """(group, topic, partition, lag) for every committed partition whose end is known."""
        for (group, topic, partition), offset in sorted(self.committed.items()):
            end = self.end_offsets.get((topic, partition))
            if end is not None:
                # A committed offset can pass the end seen a moment earlier: never negative.
                yield group, topic, partition, max(0, end - offset)


def is_platform_topic(name: str, *, prefix: str) -> bool:
    return name.startswith(prefix) and name[len(prefix) :].startswith(TOPIC_STEMS)


def is_platform_group(name: str, *, prefix: str) -> bool:
    return name.startswith(prefix + GROUP_STEM)


def logical(name: str, *, prefix: str) -> str:
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


class OffsetsReader:
    """Reads committed and end offsets with one admin client and one group-less consumer,
    kept across polls and rebuilt after an error."""

    def __init__(self, bootstrap: str, *, prefix: str) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            await self.close()
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap, request_timeout_ms=10_000
            )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=10_000,
            )
            try:
                await admin.start()
                await consumer.start()
            except BaseException:
                await admin.close()
                await consumer.stop()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def read(self) -> LagSnapshot:
        admin, consumer = await self._clients()
        prefix = self._prefix
        listed = await admin.list_consumer_groups()
        groups = sorted({g[0] for g in listed if is_platform_group(g[0], prefix=prefix)})
        topics = [t for t in await admin.list_topics() if is_platform_topic(t, prefix=prefix)]
        partitions = [
            TopicPartition(t["topic"], p["partition"])
            for t in (await admin.describe_topics(topics) if topics else [])
            if t["error_code"] == 0
            for p in t["partitions"]
        ]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        committed: dict[tuple[str, str, int], int] = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            for tp, meta in offsets.items():
                if meta.offset >= 0 and is_platform_topic(tp.topic, prefix=prefix):
                    key = (logical(group, prefix=prefix), logical(tp.topic, prefix=prefix))
                    committed[(*key, tp.partition)] = meta.offset
        return LagSnapshot(
            end_offsets={
                (logical(tp.topic, prefix=prefix), tp.partition): end for tp, end in ends.items()
            },
            committed=committed,
        )

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()


class LagCollector(Collector):
    """Exports the latest snapshot at scrape time, so a group or topic that went away stops
    being exported instead of freezing at its last value."""

    def __init__(self) -> None:
        self.snapshot: LagSnapshot | None = None
        self.last_success: float | None = None

    def update(self, snapshot: LagSnapshot, *, at: float) -> None:
        self.snapshot = snapshot
        self.last_success = at

    def collect(self) -> Iterable[Metric]:
        lag = GaugeMetricFamily(
            "cxm_kafka_consumer_lag_messages",
            "Messages appended to a partition but not yet committed by the consumer group",
            labels=["group", "topic", "partition"],
        )
        committed = GaugeMetricFamily(
            "cxm_kafka_consumer_committed_offset",
            "Offset the consumer group committed (next message it will process)",
            labels=["group", "topic", "partition"],
        )
        end = GaugeMetricFamily(
            "cxm_kafka_topic_end_offset",
            "End offset (high watermark) of a platform topic partition",
            labels=["topic", "partition"],
        )
        last = GaugeMetricFamily(
            "cxm_kafka_lag_last_success_timestamp_seconds",
            "Unix time of the last poll that read every offset",
        )
        snapshot = self.snapshot
        if snapshot is not None:
            for group, topic, partition, value in snapshot.lags():
                lag.add_metric([group, topic, str(partition)], value)
            for (group, topic, partition), offset in sorted(snapshot.committed.items()):
                committed.add_metric([group, topic, str(partition)], offset)
            for (topic, partition), offset in sorted(snapshot.end_offsets.items()):
                end.add_metric([topic, str(partition)], offset)
        if self.last_success is not None:
            last.add_metric([], self.last_success)
        return [lag, committed, end, last]


class LagExporter:
    def __init__(
        self, settings: LagExporterSettings, *, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.settings = settings
        self.reader = OffsetsReader(settings.kafka_bootstrap, prefix=settings.topic_prefix)
        self.collector = LagCollector()
        registry.register(self.collector)
        self.polls = Counter(
            "cxm_kafka_lag_polls_total",
            "Offset polls, by outcome (ok, error)",
            ["outcome"],
            registry=registry,
        )
        self.poll_seconds = Histogram(
            "cxm_kafka_lag_poll_seconds",
            "Time to read every group's committed and every topic's end offsets",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )

    async def poll_once(self) -> bool:
        started = time.perf_counter()
        try:
            snapshot = await asyncio.wait_for(self.reader.read(), 30)
        except Exception as exc:  # any failure: report, rebuild the clients, try next round
            self.polls.labels("error").inc()
            log.warning("offset poll failed error=%s", type(exc).__name__)
            with contextlib.suppress(Exception):
                await self.reader.close()
            return False
        self.poll_seconds.observe(time.perf_counter() - started)
        self.polls.labels("ok").inc()
        self.collector.update(snapshot, at=time.time())
        return True

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.settings.lag_poll_seconds)

    def fresh(self) -> bool:
        """The last successful poll is recent (three poll intervals)."""
        last = self.collector.last_success
        return last is not None and time.time() - last < 3 * self.settings.lag_poll_seconds + 30


def create_app(settings: LagExporterSettings | None = None) -> FastAPI:
    settings = settings or LagExporterSettings()
    exporter = LagExporter(settings)

    async def offsets_check() -> bool:
        return exporter.fresh()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(exporter.run(), name="cxm-lag-poll")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await exporter.reader.close()

    app = FastAPI(title="CXM Kafka lag exporter", version="0.1.0", lifespan=lifespan)
    app.state.exporter = exporter
    app.include_router(health_router({"offsets": offsets_check}))
    return app


def main() -> None:
    settings = LagExporterSettings()
    configure_logging(service="lag-exporter", level=settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
