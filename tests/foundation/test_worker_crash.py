"""An agent that raises takes the whole worker down (exit code 70) instead of being restarted
in place behind a green /readyz: Kafka then redelivers what was not committed."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cxm_shared.kafka import ensure_topics
from cxm_shared.streaming import CRASH_EXIT_CODE
from cxm_shared.topics import Topics, TopicSpec

pytestmark = pytest.mark.integration

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from cxm_shared.kafka import make_producer
    from cxm_shared.streaming import hosted, make_faust_app, worker_ready

    bootstrap, source, app_id, datadir = sys.argv[1:5]
    app = make_faust_app(app_id, bootstrap=bootstrap, datadir=Path(datadir), partitions=1)
    words = app.topic(source, key_serializer="raw", value_serializer="raw", partitions=1)

    @app.agent(words, concurrency=1)
    async def explode(stream):
        async for value in stream:
            raise RuntimeError("database went away")

    async def main():
        async with hosted(app):
            while not worker_ready(app):
                await asyncio.sleep(0.1)
            producer = make_producer(bootstrap)
            await producer.start()
            await producer.send_and_wait(source, b"boom")
            await producer.stop()
            await asyncio.sleep(60)  # the watchdog must end the process long before this
        sys.exit(0)

    asyncio.run(main())
    """
)


def test_a_crashing_agent_stops_the_process(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    import asyncio

    source = f"{topics.prefix}crash-words"
    asyncio.run(ensure_topics(kafka_bootstrap, [TopicSpec(source, partitions=1)]))
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            kafka_bootstrap,
            source,
            f"{topics.prefix}crash",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == CRASH_EXIT_CODE, result.stderr[-3000:]
