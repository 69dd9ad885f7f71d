"""Tables of the alerting service (schema ``alerting``); changed only through migrations."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table, func
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "alerting"
metadata = MetaData(schema=SCHEMA)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
