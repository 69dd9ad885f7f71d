"""processed_events.published_to: the customer id an event was first published under

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

A redelivered event (the worker died after publishing it, before its offset was committed)
is published again under the same customer id as the first time, not under whoever owns that
customer now: had a merge happened in between, the new owner could apply the event before
the merged-away customer's state (which already holds it) is combined into theirs, and the
combination would count the event twice.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE profile.processed_events ADD COLUMN published_to text")
    op.execute(
        "CREATE INDEX processed_events_published_idx ON profile.processed_events (published_to)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE profile.processed_events DROP COLUMN published_to")
