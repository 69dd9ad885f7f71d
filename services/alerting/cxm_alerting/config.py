"""Settings of the alerting service (env prefix ``CXM_``, port ``CXM_ALERTING_PORT``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr

from cxm_shared.settings import ServiceSettings

DEFAULT_ROUTING = Path(__file__).parent / "routing" / "default.yaml"


class AlertingSettings(ServiceSettings):
    service_name: str = "alerting"
    port: int = Field(
        default=8004, ge=1, le=65535, validation_alias=AliasChoices("CXM_ALERTING_PORT")
    )
    # The YAML routing tree (receivers = teams). The shipped default routes to
    # support / cx / marketing / logistics over SSE.
    routing_config: Path = DEFAULT_ROUTING
    # Webhook secrets by the ``secret_ref`` named in the routing YAML (JSON object in the env:
    # CXM_WEBHOOK_SECRETS='{"RETENTION": "whsec_..."}'); unknown refs fall back to the
    # environment variable of that name.
    webhook_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    profile_base_url: str = "http://127.0.0.1:8002"
    public_base_url: str = "http://127.0.0.1:8004"
    # One alert per (kind, customer, window).
    alert_window_seconds: float = Field(default=24 * 3600, gt=0)
    journey_size: int = Field(default=10, ge=1, le=100)

    # Silences are cached in memory; another process's new silence applies within this time.
    silence_refresh_seconds: float = Field(default=1.0, ge=0)

    delivery_timeout_seconds: float = Field(default=5.0, gt=0)
    delivery_concurrency_per_receiver: int = Field(default=4, ge=1)
    delivery_poll_seconds: float = Field(default=0.5, gt=0)
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)
    retry_max_attempts: int = Field(default=6, ge=1)
    escalation_poll_seconds: float = Field(default=5.0, gt=0)
    # How often open alerts are checked for a due repeat_interval reminder.
    repeat_poll_seconds: float = Field(default=5.0, gt=0)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "cxm-alerts@localhost"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False

    consumer_group: str = "cxm-alerting"

    @property
    def delivery_lease_seconds(self) -> float:
        """How long a claimed delivery is reserved: past an attempt's worst case, so a crashed
        worker's claim expires and the delivery is retried (same webhook-id)."""
        return self.delivery_timeout_seconds + 5.0

    def webhook_secret(self, ref: str | None) -> str | None:
        if ref is None:
            return None
        if ref in self.webhook_secrets:
            return self.webhook_secrets[ref].get_secret_value()
        return os.environ.get(ref)
