"""accepted event ids (dedup window)

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accepted_events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column(
            "accepted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema="ingest",
    )
    op.create_index(
        "ix_accepted_events_accepted_at", "accepted_events", ["accepted_at"], schema="ingest"
    )


def downgrade() -> None:
    op.drop_table("accepted_events", schema="ingest")
