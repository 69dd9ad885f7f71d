"""Tables of the alerting service (schema ``alerting``); changed only through migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "alerting"
metadata = MetaData(schema=SCHEMA)

# One row per (kind, customer, window): the decision and the alert's lifecycle.
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
    Column("severity", String(16), nullable=False, server_default="warning"),
    Column("team", String(128), nullable=False, server_default=""),
    Column("receivers", JSONB, nullable=False, server_default="[]"),
    Column("labels", JSONB, nullable=False, server_default="{}"),
    Column("group_key", Text, nullable=False, server_default=""),
    Column("window_start", DateTime(timezone=True)),
    Column("assignee", String(128)),
    Column("assigned_at", DateTime(timezone=True)),
    Column("acked_at", DateTime(timezone=True)),
    Column("acked_by", String(128)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_by", String(128)),
    Column("sla_deadline", DateTime(timezone=True)),
    Column("sla_breaches", Integer, nullable=False, server_default="0"),
    Column("reopen_count", Integer, nullable=False, server_default="0"),
    Column("muted_by", Text),
    Column("history", JSONB, nullable=False, server_default="[]"),
    # Next look of the repeat pass at an open alert; reminders sent (webhook-id suffix).
    Column("repeat_at", DateTime(timezone=True)),
    Column("repeat_count", Integer, nullable=False, server_default="0"),
)

# The outbox: pending notifications written in the same transaction as the decision.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("alert_id", String(64), nullable=False),
    Column("msg_id", String(128), nullable=False),
    Column("receiver", String(128), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("config_index", Integer, nullable=False),
    Column("event", String(32), nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    # Set for routes whose group_wait holds notifications back (see delivery.grouping).
    Column("group_key", Text),
    Column("group_msg_id", String(128)),
)

silences = Table(
    "silences",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("matchers", JSONB, nullable=False),
    Column("starts_at", DateTime(timezone=True), nullable=False),
    Column("ends_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Per-team sequence: the row lock taken to bump it is held until commit, so events become
# visible in id order and a Last-Event-ID resume never skips one.
stream_heads = Table(
    "stream_heads",
    metadata,
    Column("team", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

stream_events = Table(
    "stream_events",
    metadata,
    Column("team", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("event", String(32), nullable=False),
    Column("alert_id", String(64), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The last touchpoints per customer, fed from cx.touchpoints.resolved (identifiers masked).
journey = Table(
    "journey",
    metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("touchpoint", String(128)),
    Column("type", String(64), nullable=False),
    Column("identifiers", JSONB, nullable=False, server_default="{}"),
    # [[merge_id, customer it came from], ...]: what an unmerge needs to move it back.
    Column("merged_via", JSONB, nullable=False, server_default="[]"),
)
