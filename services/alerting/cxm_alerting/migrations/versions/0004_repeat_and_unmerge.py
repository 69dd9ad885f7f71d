"""repeat notifications of still-open alerts; journey rows remember the merges that moved them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

S = "alerting"


def upgrade() -> None:
    # When the repeat pass next looks at an open alert (the earliest repeat_interval of its
    # receivers), and how many reminders it got: the N of the "<alert id>.repeatedN" webhook-id.
    op.add_column("alerts", sa.Column("repeat_at", sa.DateTime(timezone=True)), schema=S)
    op.add_column(
        "alerts",
        sa.Column("repeat_count", sa.Integer, nullable=False, server_default="0"),
        schema=S,
    )
    op.create_index(
        "ix_alerts_repeat",
        "alerts",
        ["repeat_at"],
        schema=S,
        postgresql_where=sa.text("status = 'open'"),
    )
    # Alerts opened before this revision: let the repeat pass work out when each is due.
    op.execute(f"UPDATE {S}.alerts SET repeat_at = updated_at WHERE status = 'open'")
    # [[merge_id, customer it came from], ...], oldest first: an unmerge moves a touchpoint
    # back to the customer it had before that merge.
    op.add_column(
        "journey",
        sa.Column("merged_via", JSONB, nullable=False, server_default="[]"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_column("journey", "merged_via", schema=S)
    op.drop_index("ix_alerts_repeat", table_name="alerts", schema=S)
    op.drop_column("alerts", "repeat_count", schema=S)
    op.drop_column("alerts", "repeat_at", schema=S)
