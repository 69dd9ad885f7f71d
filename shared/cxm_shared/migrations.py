"""The body of every service's Alembic ``env.py`` (async engine, schema-per-service)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def run_env(target_metadata: MetaData | None) -> None:
    config = context.config
    schema = config.attributes.get("schema") or "public"
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set by cxm_shared.db.migrate"

    def do_run(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                # Serialise concurrent migrators (several replicas starting at once).
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema}
                )
                await conn.run_sync(do_run)
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        raise RuntimeError("offline migrations are not supported; run against a database")
    asyncio.run(run_async())
