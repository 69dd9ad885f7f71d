"""identity graph: customers tree, links, merges, quarantines, timeline, traits, scores

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Customer ids become text (uuid5 strings derived from event ids, see identity.resolution).
A link (identifier -> home customer) never moves; a merge points the loser at a parent.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = [
    "ALTER TABLE profile.customers ALTER COLUMN customer_id TYPE text",
    "ALTER TABLE profile.customers ADD COLUMN parent_id text"
    " REFERENCES profile.customers (customer_id)",
    "ALTER TABLE profile.customers ADD COLUMN created_by_event text",
    "CREATE INDEX customers_parent_idx ON profile.customers (parent_id)"
    " WHERE parent_id IS NOT NULL",
    """CREATE TABLE profile.links (
        identifier_key text PRIMARY KEY,
        identifier_type text NOT NULL,
        masked text NOT NULL,
        customer_id text NOT NULL REFERENCES profile.customers (customer_id),
        event_id text NOT NULL,
        rule text NOT NULL,
        trust text NOT NULL,
        linked_at timestamptz NOT NULL
    )""",
    "CREATE INDEX links_customer_idx ON profile.links (customer_id)",
    """CREATE TABLE profile.merges (
        merge_id text PRIMARY KEY,
        loser_id text NOT NULL,
        winner_id text NOT NULL,
        parent_id text NOT NULL,
        event_id text NOT NULL,
        rule text NOT NULL,
        joined_by_type text NOT NULL,
        joined_by_key text NOT NULL,
        joined_by_masked text NOT NULL,
        joined_to_type text NOT NULL,
        joined_to_key text NOT NULL,
        joined_to_masked text NOT NULL,
        merged_at timestamptz NOT NULL,
        unmerged_at timestamptz,
        unmerge_reason text
    )""",
    "CREATE INDEX merges_loser_idx ON profile.merges (loser_id)",
    "CREATE INDEX merges_parent_idx ON profile.merges (parent_id)",
    "CREATE INDEX merges_winner_idx ON profile.merges (winner_id)",
    """CREATE TABLE profile.separations (
        customer_a text NOT NULL,
        customer_b text NOT NULL,
        reason text NOT NULL,
        separated_at timestamptz NOT NULL,
        PRIMARY KEY (customer_a, customer_b)
    )""",
    "CREATE INDEX separations_b_idx ON profile.separations (customer_b)",
    """CREATE TABLE profile.quarantines (
        quarantine_id text PRIMARY KEY,
        customer_id text NOT NULL,
        other_customer_id text NOT NULL,
        event_id text NOT NULL,
        reasons text[] NOT NULL,
        joined_by_type text NOT NULL,
        joined_by_key text NOT NULL,
        joined_by_masked text NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        quarantined_at timestamptz NOT NULL,
        decided_at timestamptz,
        merge_id text
    )""",
    "CREATE INDEX quarantines_status_idx ON profile.quarantines (status, quarantined_at)",
    """CREATE TABLE profile.processed_events (
        event_id text PRIMARY KEY,
        customer_id text NOT NULL,
        processed_at timestamptz NOT NULL
    )""",
    "CREATE INDEX processed_events_customer_idx ON profile.processed_events (customer_id)",
    """CREATE TABLE profile.timeline (
        event_id text PRIMARY KEY,
        customer_id text NOT NULL,
        occurred_at timestamptz NOT NULL,
        received_at timestamptz NOT NULL,
        type text NOT NULL,
        channel text NOT NULL,
        touchpoint text,
        source text NOT NULL,
        properties jsonb NOT NULL,
        context jsonb NOT NULL
    )""",
    "CREATE INDEX timeline_customer_idx ON profile.timeline (customer_id, occurred_at, event_id)",
    """CREATE TABLE profile.traits (
        customer_id text NOT NULL,
        name text NOT NULL,
        value jsonb NOT NULL,
        source text NOT NULL,
        channel text NOT NULL,
        event_id text NOT NULL,
        occurred_at timestamptz NOT NULL,
        PRIMARY KEY (customer_id, name)
    )""",
    """CREATE TABLE profile.scores (
        customer_id text PRIMARY KEY,
        snapshot jsonb NOT NULL,
        updated_at timestamptz NOT NULL
    )""",
    # Only keyed hashes of erased identifiers: enough to refuse re-creation, nothing else.
    """CREATE TABLE profile.suppressions (
        identifier_key text PRIMARY KEY,
        identifier_type text NOT NULL,
        suppressed_at timestamptz NOT NULL
    )""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in (
        "suppressions",
        "scores",
        "traits",
        "timeline",
        "processed_events",
        "quarantines",
        "separations",
        "merges",
        "links",
    ):
        op.execute(f"DROP TABLE profile.{table}")
    op.execute("DROP INDEX profile.customers_parent_idx")
    op.execute("ALTER TABLE profile.customers DROP COLUMN created_by_event")
    op.execute("ALTER TABLE profile.customers DROP COLUMN parent_id")
    op.execute(
        "ALTER TABLE profile.customers ALTER COLUMN customer_id TYPE uuid USING customer_id::uuid"
    )
