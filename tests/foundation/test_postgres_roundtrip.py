"""SQLAlchemy (async) + asyncpg against the real PostgreSQL, and every service's Alembic
migrations applying to an empty database."""

import asyncio
import importlib
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cxm_shared.db import db_reachable, migrate

pytestmark = pytest.mark.integration


async def test_write_and_read_a_row(db_engine: AsyncEngine) -> None:
    metadata = MetaData()
    notes = Table(
        "notes", metadata, Column("id", Integer, primary_key=True), Column("body", String)
    )
    async with db_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(
            notes.insert(), [{"id": 1, "body": "こんにちは"}, {"id": 2, "body": "hi"}]
        )
    async with db_engine.connect() as conn:
        rows = (await conn.execute(select(notes.c.body).order_by(notes.c.id))).scalars().all()
    assert rows == ["こんにちは", "hi"]
    assert await db_reachable(db_engine)


@pytest.mark.parametrize("service", ["profile", "alerting"])
async def test_service_migrations_apply_twice(
    service: str, database_url: str, db_engine: AsyncEngine
) -> None:
    package = importlib.import_module(f"cxm_{service}")
    models = importlib.import_module(f"cxm_{service}.models")
    script_location = Path(package.__file__).parent / "migrations"
    for _ in range(2):  # the second run finds the schema at head and changes nothing
        await asyncio.to_thread(
            migrate, script_location=script_location, url=database_url, schema=models.SCHEMA
        )

    def tables(sync_conn) -> set[str]:
        return set(inspect(sync_conn).get_table_names(schema=models.SCHEMA))

    async with db_engine.connect() as conn:
        found = await conn.run_sync(tables)
        version = (
            await conn.execute(text(f'SELECT version_num FROM "{models.SCHEMA}".alembic_version'))
        ).scalar_one()
    expected = {t.name for t in models.metadata.tables.values()}
    assert expected <= found
    assert version


async def test_unreachable_database_is_reported_not_raised() -> None:
    from cxm_shared.db import make_engine

    engine = make_engine("postgresql+asyncpg://nobody:x@127.0.0.1:1/none")
    try:
        assert await db_reachable(engine, timeout=2) is False
    finally:
        await engine.dispose()
