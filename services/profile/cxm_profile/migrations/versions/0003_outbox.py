"""outbox: announcements written in the same transaction as the change they announce

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

A row is deleted once the broker acknowledged it (not merely marked sent): an erasure's
announcement names the erased customer, and erase must leave no row naming them.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """CREATE TABLE profile.outbox (
            id bigserial PRIMARY KEY,
            topic text NOT NULL,
            key bytea NOT NULL,
            value bytea,
            created_at timestamptz NOT NULL DEFAULT now()
        )"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE profile.outbox")
