"""faust-streaming: one factory with the settings that keep data safe, and a host that runs
a faust app inside a FastAPI service's event loop (so the worker and its HTTP endpoints share
one process and one lifecycle)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import faust
import mode
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import CollectorRegistry

from cxm_shared.faust_safety import RebalanceSafeEvent, install_durable_flush, install_seek_safety

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip()]


def make_faust_app(
    app_id: str,
    *,
    bootstrap: str,
    datadir: Path,
    store: str = "memory://",
    partitions: int = 6,
    replication: int = 1,
    **overrides: Any,
) -> faust.App:
    """A faust app with at-least-once processing and durable writes.

    Agents must be declared with ``concurrency=1``: with more, faust-streaming can commit an
    offset past a message still being processed (faust-streaming issue #606).
    """
    options: dict[str, Any] = {
        "broker": broker_urls(bootstrap),
        "store": store,
        "datadir": str(datadir),
        "web_enabled": False,
        "processing_guarantee": "at_least_once",
        "producer_acks": -1,
        "topic_partitions": partitions,
        "topic_replication_factor": replication,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_every": 1000,
        "broker_commit_interval": 1.0,
        "table_standby_replicas": 0,
        "stream_wait_empty": True,
        "autodiscover": False,
        # An agent that raises crashes the whole worker instead of being restarted in place:
        # the process exits (see hosted()), nothing past the last committed offset is lost,
        # and /readyz cannot stay green over an agent failing on every message. Bad input is
        # dead-lettered inside the agents and never raises.
        "agent_supervisor": mode.CrashingSupervisor,
        # An event faust discards around a rebalance is fetched again, never committed
        # unprocessed (see cxm_shared.faust_safety).
        "Event": RebalanceSafeEvent,
    }
    options.update(overrides)
    install_durable_flush()  # a commit never overtakes the table writes before it
    install_seek_safety()  # a rebalance's seek is not undone by records fetched before it
    # faust creates only the last level of its data directory
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(app_id, **options)


def attach_prometheus_sensors(app: faust.App, *, name_prefix: str) -> CollectorRegistry:
    """faust's own sensors (messages in/out, table operations, commit and send latency,
    rebalances, partition offsets) as Prometheus metrics named ``<name_prefix>_...``.

    They go into a registry of the app's own, served beside the global one by
    :func:`cxm_shared.telemetry.health_router` (``extra_registries``): a process may build
    several faust apps (tests do), and the global registry refuses duplicate names.
    """
    registry = CollectorRegistry(auto_describe=True)
    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(registry, name_prefix))
    return registry


@asynccontextmanager
async def hosted(app: faust.App) -> AsyncIterator[faust.App]:
    """Start ``app`` in the running loop; stop it on exit. If the worker crashes (an agent
    raised, the broker connection was lost for good), the process exits non-zero at once:
    nothing past the last committed offset is lost, Kafka redelivers it to the next worker."""
    await app.start()
    watchdog = asyncio.create_task(_exit_on_crash(app), name=f"{app.conf.id}-watchdog")
    try:
        yield app
    finally:
        watchdog.cancel()
        await app.stop()


async def _exit_on_crash(app: faust.App) -> None:
    while True:
        await asyncio.sleep(0.5)
        if app.crashed:
            log.critical("faust worker crashed app=%s reason=%r", app.conf.id, app.crash_reason)
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)


def worker_ready(app: faust.App) -> bool:
    """The worker finished recovery and consumes (table state is complete)."""
    try:
        return bool(app.started and not app.crashed and app.tables.recovery.completed.is_set())
    except AttributeError:
        return False
