"""Fixtures for tests against the real PostgreSQL (and Kafka where a test asks for it)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cxm_profile.api import MIGRATIONS
from cxm_profile.models import SCHEMA
from cxm_shared.db import migrate
from cxm_shared.events import Touchpoint

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def graph_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A fresh database with the profile schema migrated."""
    await asyncio.to_thread(migrate, script_location=MIGRATIONS, url=database_url, schema=SCHEMA)
    engine = create_async_engine(database_url, pool_size=8)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def make_touchpoint() -> Callable[..., Touchpoint]:
    """Builds touchpoints; `minute` places the event in time so tests can shuffle delivery."""
    counter = itertools.count()

    def build(
        event_id: str | None = None,
        *,
        channel: str = "web",
        touchpoint: str | None = None,
        minute: int | None = None,
        type: str = "page_view",
        traits: dict[str, Any] | None = None,
        properties: dict[str, Any] | None = None,
        **identifiers: str,
    ) -> Touchpoint:
        n = next(counter)
        at = START + timedelta(minutes=n if minute is None else minute)
        return Touchpoint(
            event_id=event_id or f"ev-{uuid.uuid4().hex}",
            type=type,
            channel=channel,
            touchpoint=touchpoint,
            occurred_at=at,
            received_at=at,
            source="test",
            identifiers=identifiers,
            traits=traits or {},
            properties=properties or {},
        )

    return build
