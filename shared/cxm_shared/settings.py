"""Typed settings, read once from the environment (prefix ``CXM_``) and passed in.

Every service subclasses :class:`ServiceSettings`. Local development works with no
environment at all; the well-known dev credentials are refused outside local mode.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_WRITE_KEY = "dev-write-key"
DEV_API_TOKEN = "dev-api-token"
DEV_DATABASE_URL = "postgresql+asyncpg://cxm:cxm-dev-password@127.0.0.1:5433/cxm"
DEV_HASH_KEY = "dev-identifier-hash-key"


class ServiceSettings(BaseSettings):
    # hide_input_in_errors: a refused setting must not print the others (passwords, tokens).
    model_config = SettingsConfigDict(
        env_prefix="CXM_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    service_name: str = "cxm"
    mode: Literal["local", "production"] = "local"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"

    kafka_bootstrap: str = "127.0.0.1:9092"
    # Prepended to every topic name: lets tests and several deployments share one cluster.
    topic_prefix: str = ""
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication: int = Field(default=1, ge=1)

    database_url: SecretStr = SecretStr(DEV_DATABASE_URL)
    # Platform-wide API tokens (profile and alerting APIs). Comma separated.
    api_tokens: SecretStr = SecretStr(DEV_API_TOKEN)

    @property
    def is_local(self) -> bool:
        return self.mode == "local"

    def api_token_list(self) -> list[str]:
        return [t.strip() for t in self.api_tokens.get_secret_value().split(",") if t.strip()]

    @model_validator(mode="after")
    def _refuse_dev_credentials_outside_local(self) -> ServiceSettings:
        if self.mode != "local":
            if DEV_API_TOKEN in self.api_token_list():
                raise ValueError(
                    "api_tokens: the dev API token is only accepted in local mode (CXM_MODE=local)"
                )
            if self.database_url.get_secret_value() == DEV_DATABASE_URL:
                raise ValueError(
                    "database_url: the dev database credentials are only accepted in local mode"
                )
        return self
