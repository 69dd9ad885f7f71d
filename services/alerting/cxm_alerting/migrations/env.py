"""Alembic environment of the alerting service (its tables live in the ``alerting`` schema)."""

from cxm_alerting.models import metadata
from cxm_shared.migrations import run_env

run_env(metadata)
