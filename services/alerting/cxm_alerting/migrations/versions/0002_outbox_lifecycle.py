"""alert lifecycle, outbox deliveries, silences, team streams, journey

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

S = "alerting"


def _ts(name: str, **kw: object) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), **kw)  # type: ignore[arg-type]


def upgrade() -> None:
    for column in (
        sa.Column("severity", sa.String(16), nullable=False, server_default="warning"),
        sa.Column("team", sa.String(128), nullable=False, server_default=""),
        sa.Column("receivers", JSONB, nullable=False, server_default="[]"),
        sa.Column("labels", JSONB, nullable=False, server_default="{}"),
        sa.Column("group_key", sa.Text, nullable=False, server_default=""),
        _ts("window_start"),
        sa.Column("assignee", sa.String(128)),
        _ts("assigned_at"),
        _ts("acked_at"),
        sa.Column("acked_by", sa.String(128)),
        _ts("resolved_at"),
        sa.Column("resolved_by", sa.String(128)),
        _ts("sla_deadline"),
        sa.Column("sla_breaches", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reopen_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("muted_by", sa.Text),
        sa.Column("history", JSONB, nullable=False, server_default="[]"),
    ):
        op.add_column("alerts", column, schema=S)
    op.create_index("ix_alerts_team_status", "alerts", ["team", "status"], schema=S)
    op.create_index(
        "ix_alerts_sla",
        "alerts",
        ["sla_deadline"],
        schema=S,
        postgresql_where=sa.text("status = 'open'"),
    )

    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("msg_id", sa.String(128), nullable=False),
        sa.Column("receiver", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("config_index", sa.Integer, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _ts("next_attempt_at", nullable=False, server_default=sa.func.now()),
        sa.Column("last_error", sa.Text),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("delivered_at"),
        schema=S,
    )
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["next_attempt_at"],
        schema=S,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_deliveries_alert", "deliveries", ["alert_id"], schema=S)

    op.create_table(
        "silences",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("matchers", JSONB, nullable=False),
        _ts("starts_at", nullable=False),
        _ts("ends_at", nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        schema=S,
    )
    op.create_table(
        "stream_heads",
        sa.Column("team", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        schema=S,
    )
    op.create_table(
        "stream_events",
        sa.Column("team", sa.String(128), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("data", JSONB, nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        schema=S,
    )
    op.create_table(
        "journey",
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(128), primary_key=True),
        _ts("occurred_at", nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("touchpoint", sa.String(128)),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("identifiers", JSONB, nullable=False, server_default="{}"),
        schema=S,
    )
    op.create_index("ix_journey_recent", "journey", ["customer_id", "occurred_at"], schema=S)


def downgrade() -> None:
    for table in ("journey", "stream_events", "stream_heads", "silences", "deliveries"):
        op.drop_table(table, schema=S)
    op.drop_index("ix_alerts_sla", table_name="alerts", schema=S)
    op.drop_index("ix_alerts_team_status", table_name="alerts", schema=S)
    for name in (
        "history",
        "muted_by",
        "reopen_count",
        "sla_breaches",
        "sla_deadline",
        "resolved_by",
        "resolved_at",
        "acked_by",
        "acked_at",
        "assigned_at",
        "assignee",
        "window_start",
        "group_key",
        "labels",
        "receivers",
        "team",
        "severity",
    ):
        op.drop_column("alerts", name, schema=S)
