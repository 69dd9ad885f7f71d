"""Tables of the ingest service (schema ``ingest``); changed only through migrations."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table, func

SCHEMA = "ingest"
metadata = MetaData(schema=SCHEMA)

# Event ids answered "accepted" (written only after Kafka acknowledged them), kept for the
# dedup window so client retries are answered "duplicate" without producing again.
accepted_events = Table(
    "accepted_events",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("accepted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
