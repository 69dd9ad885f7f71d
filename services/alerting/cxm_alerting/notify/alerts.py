"""The view of an alert that the notification decisions need."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    labels: Mapping[str, str]
    starts_at: datetime
    resolved_at: datetime | None = None

    def is_firing(self, *, now: datetime) -> bool:
        """Open at ``now``; a resolution stamped in the future has not happened yet."""
        return self.resolved_at is None or self.resolved_at > now
