"""Alembic environment of the ingest service (its tables live in the ``ingest`` schema)."""

from cxm_ingest.events.models import metadata
from cxm_shared.migrations import run_env

run_env(metadata)
