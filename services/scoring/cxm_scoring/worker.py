"""The scoring service's faust app: one experience state per customer (agents come with the
scoring issue; this module owns the app so there is one place that builds it)."""

from __future__ import annotations

from pathlib import Path

import faust

from cxm_scoring.config import ScoringSettings
from cxm_shared.streaming import make_faust_app


def create_faust_app(settings: ScoringSettings) -> faust.App:
    return make_faust_app(
        f"{settings.topic_prefix}cxm-scoring",
        bootstrap=settings.kafka_bootstrap,
        datadir=Path(settings.data_dir) / "scoring",
        store=settings.table_store,
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
    )
