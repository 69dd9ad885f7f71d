"""Tables of the profile service (schema ``profile``); changed only through migrations.

The identity graph and the profile read side are queried with plain SQL (see
``identity/postgres.py`` and ``profiles/service.py``); this module names the tables so tests
and erasure can walk all of them.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, MetaData, String, Table, Text, func

SCHEMA = "profile"
metadata = MetaData(schema=SCHEMA)

customers = Table(
    "customers",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("parent_id", Text, ForeignKey("customers.customer_id"), nullable=True),
    Column("created_by_event", Text, nullable=True),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Every table that can name a customer (erasure deletes from each; tests check each).
CUSTOMER_TABLES = (
    "links",
    "merges",
    "separations",
    "quarantines",
    "processed_events",
    "timeline",
    "traits",
    "scores",
    "customers",
)
