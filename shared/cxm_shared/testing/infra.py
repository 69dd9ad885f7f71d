"""Where the tests find Kafka and PostgreSQL, in this order:

1. environment variables (an existing cluster): ``CXM_TEST_KAFKA_BOOTSTRAP``,
   ``CXM_TEST_DATABASE_URL`` (``postgresql+asyncpg://...``);
2. testcontainers, when a Docker engine answers;
3. the local Docker-free infrastructure (``deploy/local/*.sh start``, idempotent).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from cxm_shared.settings import DEV_DATABASE_URL

REPO_ROOT = Path(__file__).resolve().parents[3]
LOCAL_SCRIPTS = REPO_ROOT / "deploy" / "local"


def docker_engine_answers() -> bool:
    if os.environ.get("CXM_TEST_NO_DOCKER") or not shutil.which("docker"):
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_local(component: str) -> None:
    script = LOCAL_SCRIPTS / f"{component}.sh"
    result = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"could not start local {component}:\n{result.stderr[-3000:]}")


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    if env := os.environ.get("CXM_TEST_KAFKA_BOOTSTRAP"):
        yield env
    elif docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.0.0").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        start_local("kafka")
        yield f"127.0.0.1:{os.environ.get('CXM_KAFKA_PORT', '9092')}"


@contextmanager
def postgres_url() -> Iterator[str]:
    if env := os.environ.get("CXM_TEST_DATABASE_URL"):
        yield env
    elif docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver="asyncpg") as pg:
            yield pg.get_connection_url()
    else:
        start_local("postgres")
        yield DEV_DATABASE_URL


@asynccontextmanager
async def fresh_database(server_url: str, *, prefix: str = "cxm_test") -> AsyncIterator[str]:
    """Create an empty database on ``server_url``, yield its URL, drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    # pre-ping: the server may have been restarted meanwhile (outage and chaos tests)
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()
