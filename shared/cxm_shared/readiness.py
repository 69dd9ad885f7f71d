"""``python -m cxm_shared.readiness``: wait until Kafka accepts a produce and PostgreSQL a
query (used by ``make up``); exits 1 with the reason when the deadline passes."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cxm_shared.kafka import ensure_topics, make_producer
from cxm_shared.topics import TopicSpec

READINESS_TOPIC = "_cxm.readiness"


async def kafka_accepts_produce(bootstrap: str) -> str | None:
    producer = make_producer(bootstrap, client_id="cxm-readiness", request_timeout_ms=5000)
    try:
        spec = TopicSpec(READINESS_TOPIC, 1, retention_ms=3_600_000)
        await asyncio.wait_for(ensure_topics(bootstrap, [spec]), 15)
        await asyncio.wait_for(producer.start(), 10)
        await asyncio.wait_for(producer.send_and_wait(READINESS_TOPIC, b"ping"), 10)
        return None
    except Exception as exc:  # report any failure as "not yet"
        return f"{type(exc).__name__}: {exc}"
    finally:
        await producer.stop()


async def postgres_answers(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 5)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()


async def wait_ready(*, bootstrap: str | None, database_url: str | None, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    pending = {"kafka": bootstrap, "postgres": database_url}
    pending = {k: v for k, v in pending.items() if v}
    last: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        for name, target in list(pending.items()):
            probe = kafka_accepts_produce if name == "kafka" else postgres_answers
            error = await probe(target)
            if error is None:
                print(f"[readiness] {name} ready", file=sys.stderr)
                del pending[name]
            else:
                last[name] = error
        if pending:
            await asyncio.sleep(1)
    for name in pending:
        print(
            f"[readiness] {name} not ready after {timeout:.0f}s: {last.get(name)}", file=sys.stderr
        )
    return 1 if pending else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kafka", help="bootstrap servers")
    parser.add_argument("--postgres", help="postgresql+asyncpg:// URL")
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args()
    sys.exit(
        asyncio.run(
            wait_ready(bootstrap=args.kafka, database_url=args.postgres, timeout=args.timeout)
        )
    )


if __name__ == "__main__":
    main()
