"""Dead-letter topics: a message a consumer cannot process goes to ``<topic>.dlq`` with the
reason in headers, so it is never silently dropped and never blocks its partition.

The reason must not contain raw personal data: pass the error *class* and a field path, not
the offending value (pydantic's messages can echo input: use :func:`safe_reason`).
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from cxm_shared.topics import Topics


def safe_reason(exc: BaseException) -> str:
    """A reason that names what was wrong without echoing the input."""
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['type']}"
            for err in exc.errors(include_input=False, include_url=False)[:10]
        ]
        return "invalid message: " + "; ".join(parts)
    return type(exc).__name__


def dlq_headers(
    *, source_topic: str, partition: int, offset: int, reason: str, service: str
) -> list[tuple[str, bytes]]:
    return [
        ("cxm-error", reason[:1000].encode()),
        ("cxm-source-topic", source_topic.encode()),
        ("cxm-source-partition", str(partition).encode()),
        ("cxm-source-offset", str(offset).encode()),
        ("cxm-service", service.encode()),
    ]


async def dead_letter(
    producer: AIOKafkaProducer,
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: BaseException,
    service: str,
    **send_kwargs: Any,
) -> None:
    """Write the original bytes to the dead-letter topic and wait for the broker's ack."""
    headers = dlq_headers(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        reason=safe_reason(error),
        service=service,
    )
    await producer.send_and_wait(
        Topics.dlq(source_topic), value=value, key=key, headers=headers, **send_kwargs
    )
