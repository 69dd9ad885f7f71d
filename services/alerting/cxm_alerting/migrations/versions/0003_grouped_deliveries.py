"""grouped deliveries: aggregation group and the grouped notification's message id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

S = "alerting"


def upgrade() -> None:
    # Rows of routes with a group_wait carry their aggregation group; the grouped
    # notification's webhook-id is fixed on its first claim so a retry reuses it.
    op.add_column("deliveries", sa.Column("group_key", sa.Text), schema=S)
    op.add_column("deliveries", sa.Column("group_msg_id", sa.String(128)), schema=S)
    op.create_index(
        "ix_deliveries_group",
        "deliveries",
        ["group_key", "receiver"],
        schema=S,
        postgresql_where=sa.text("group_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_group", table_name="deliveries", schema=S)
    op.drop_column("deliveries", "group_msg_id", schema=S)
    op.drop_column("deliveries", "group_key", schema=S)
