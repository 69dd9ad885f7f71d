"""Settings of the profile service (env prefix ``CXM_``, port ``CXM_PROFILE_PORT``)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import yaml
from pydantic import AliasChoices, Field, SecretStr, model_validator

from cxm_profile.decisions.rules import DecisionRules, load_rules_file
from cxm_profile.identity.rules import DEFAULT_RULES, ResolutionRules, load_rules
from cxm_shared.settings import DEV_HASH_KEY, ServiceSettings


class ProfileSettings(ServiceSettings):
    service_name: str = "profile"
    port: int = Field(
        default=8002, ge=1, le=65535, validation_alias=AliasChoices("CXM_PROFILE_PORT")
    )
    data_dir: str = ".data"
    # HMAC key of identifier hashes: rotating it orphans every stored identifier.
    identifier_hash_key: SecretStr = SecretStr(DEV_HASH_KEY)
    # YAML/JSON file with resolution rules (see identity/rules.py); built-in defaults if unset.
    resolution_rules_file: Path | None = None
    # YAML file with personalisation placements, rules and experiments (GET /v1/decisions);
    # the bundled decisions/default.yaml if unset.
    decision_rules_file: Path | None = None
    db_pool_size: int = Field(default=10, ge=1)
    # Touchpoints resolved per database transaction, and how long to wait to fill a batch.
    resolution_batch_size: int = Field(default=200, ge=1, le=5000)
    resolution_batch_wait_seconds: float = Field(default=0.02, gt=0, le=5)
    scores_batch_size: int = Field(default=500, ge=1, le=10000)
    # Consumer group liveness: how soon a killed worker's partitions move to another one.
    broker_session_timeout_s: float = Field(default=60.0, gt=0)
    broker_heartbeat_interval_s: float = Field(default=3.0, gt=0)
    # How often the outbox relay retries announcements a route could not send at once.
    outbox_interval_seconds: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _refuse_dev_hash_key_outside_local(self) -> ProfileSettings:
        if self.mode != "local" and self.identifier_hash_key.get_secret_value() == DEV_HASH_KEY:
            raise ValueError("identifier_hash_key: the dev key is only accepted in local mode")
        return self

    @property
    def secret(self) -> bytes:
        return self.identifier_hash_key.get_secret_value().encode()

    @cached_property
    def rules(self) -> ResolutionRules:
        if self.resolution_rules_file is None:
            return load_rules(DEFAULT_RULES)
        return load_rules(yaml.safe_load(self.resolution_rules_file.read_text()))

    @cached_property
    def decision_rules(self) -> DecisionRules:
        return load_rules_file(self.decision_rules_file)
