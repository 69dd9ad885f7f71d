"""Alembic environment of the profile service (its tables live in the ``profile`` schema)."""

from cxm_profile.models import metadata
from cxm_shared.migrations import run_env

run_env(metadata)
