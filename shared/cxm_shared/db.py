"""PostgreSQL through SQLAlchemy (async) + asyncpg, and Alembic migrations per service."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def make_engine(url: str, *, pool_size: int = 10, **kwargs: object) -> AsyncEngine:
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, **kwargs
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


async def db_reachable(engine: AsyncEngine, *, timeout: float = 2.0) -> bool:
    async def probe() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(probe(), timeout)
        return True
    except Exception:  # any failure means "not ready": readiness must never raise
        return False


def migrate(*, script_location: Path, url: str, schema: str, revision: str = "head") -> None:
    """Run a service's Alembic migrations (synchronous; call it before the event loop starts
    or in a thread). Each service keeps its tables and its version table in its own schema."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["schema"] = schema
    command.upgrade(cfg, revision)
