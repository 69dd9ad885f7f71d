"""The profile service's faust app (identity-resolution agents come with the profile issue;
this module owns the app so there is one place that builds it)."""

from __future__ import annotations

from pathlib import Path

import faust

from cxm_profile.config import ProfileSettings
from cxm_shared.streaming import make_faust_app


def create_faust_app(settings: ProfileSettings) -> faust.App:
    return make_faust_app(
        f"{settings.topic_prefix}cxm-profile",
        bootstrap=settings.kafka_bootstrap,
        datadir=Path(settings.data_dir) / "profile",
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
    )
