"""Settings of the ingest service (env prefix ``CXM_``, port ``CXM_INGEST_PORT``).

Write keys are configured as ``source:channel:sha256hex`` entries, comma separated, in
``CXM_WRITE_KEYS``; only the SHA-256 of each key is ever held. In local mode the dev key
``dev-write-key`` is added as source ``dev`` (channel ``web``); outside local mode it is refused.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import AliasChoices, Field, SecretStr, model_validator

from cxm_shared.settings import DEV_WRITE_KEY, ServiceSettings

_ENTRY = re.compile(
    r"^(?P<source>[a-z0-9][a-z0-9_.-]{0,63}):(?P<channel>[a-z][a-z0-9_]{0,63}):"
    r"(?P<digest>[0-9a-f]{64})$"
)
DEV_SOURCE = "dev"
DEV_CHANNEL = "web"


def hash_write_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class IngestSettings(ServiceSettings):
    service_name: str = "ingest"
    port: int = Field(
        default=8001, ge=1, le=65535, validation_alias=AliasChoices("CXM_INGEST_PORT")
    )

    # Processes serving the port (uvicorn workers). The service is stateless apart from its
    # per-process producer and dedup writer, so it scales out by adding processes; 1 by default
    # (one per core is the ceiling worth trying; see bench/results/ingest.json).
    workers: int = Field(
        default=1, ge=1, le=64, validation_alias=AliasChoices("CXM_INGEST_WORKERS")
    )

    write_keys: SecretStr = SecretStr("")

    # Limits (bytes are measured after gzip decompression).
    max_event_bytes: int = Field(default=32 * 1024, ge=1024)
    max_batch_bytes: int = Field(default=500 * 1024, ge=1024)
    max_batch_events: int = Field(default=2500, ge=1)

    # Per write key token bucket, counted in events.
    rate_limit_events_per_second: float = Field(default=20_000, gt=0)
    rate_limit_burst: int = Field(default=50_000, ge=1)

    # Segment timestamp correction: receivedAt - sentAt is applied to the client's timestamp
    # only up to this much; a client clock further off is not trusted beyond it.
    max_clock_skew_seconds: float = Field(default=24 * 3600, ge=0)
    # Native occurred_at may not lie further in the future than this.
    max_future_seconds: float = Field(default=3600, ge=0)

    # Dedup window of accepted event ids (Segment clients retry for up to 12 hours).
    dedup_window_days: int = Field(default=7, ge=7)
    dedup_cleanup_interval_seconds: float = Field(default=3600, gt=0)

    # How long a request waits for Kafka before answering 503.
    produce_timeout_seconds: float = Field(default=10.0, gt=0)
    retry_after_seconds: int = Field(default=5, ge=1)

    def write_key_entries(self) -> list[tuple[str, str, str]]:
        """``(source, channel, sha256hex)`` for every configured key (dev key in local mode)."""
        entries = []
        for raw in self.write_keys.get_secret_value().split(","):
            raw = raw.strip()
            if not raw:
                continue
            match = _ENTRY.match(raw)
            if match is None:
                raise ValueError(
                    "write_keys: each entry must be source:channel:sha256hex "
                    "(lowercase source/channel, 64 hex digits)"
                )
            entries.append((match["source"], match["channel"], match["digest"]))
        if self.is_local:
            entries.append((DEV_SOURCE, DEV_CHANNEL, hash_write_key(DEV_WRITE_KEY)))
        return entries

    @model_validator(mode="after")
    def _check_write_keys(self) -> IngestSettings:
        entries = self.write_key_entries()
        if not self.is_local and any(d == hash_write_key(DEV_WRITE_KEY) for *_, d in entries):
            raise ValueError("write_keys: the dev write key is only accepted in local mode")
        return self
