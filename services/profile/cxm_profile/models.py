"""Tables of the profile service (schema ``profile``); changed only through migrations."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table, func
from sqlalchemy.dialects.postgresql import UUID

SCHEMA = "profile"
metadata = MetaData(schema=SCHEMA)

customers = Table(
    "customers",
    metadata,
    Column("customer_id", UUID(as_uuid=True), primary_key=True),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
