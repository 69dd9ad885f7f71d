"""pytest plugin loaded for the whole repository (see the root pyproject's ``addopts``).

Infrastructure fixtures start nothing unless a test asks for them, so unit tests run
without Kafka or PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cxm_shared.testing import infra
from cxm_shared.topics import Topics


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A Kafka bootstrap address (env, testcontainers, or the local broker)."""
    with infra.kafka_bootstrap() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A ``postgresql+asyncpg://`` URL of a server the tests may create databases on."""
    with infra.postgres_url() as url:
        yield url


@pytest.fixture
def topics() -> Topics:
    """Topic names private to one test (a unique prefix on the shared broker)."""
    return Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")


@pytest.fixture
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    async with infra.fresh_database(postgres_url) as url:
        yield url


@pytest.fixture
async def db_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()
