"""Settings: dev credentials work locally and are refused outside local mode."""

import pytest
from pydantic import ValidationError

from cxm_shared.settings import DEV_API_TOKEN, ServiceSettings


def test_local_mode_accepts_the_dev_credentials() -> None:
    settings = ServiceSettings()
    assert settings.is_local
    assert settings.api_token_list() == [DEV_API_TOKEN]


def test_production_refuses_the_dev_api_token() -> None:
    with pytest.raises(ValidationError, match="api_tokens"):
        ServiceSettings(mode="production", database_url="postgresql+asyncpg://u:p@db/x")


def test_production_refuses_the_dev_database_credentials() -> None:
    with pytest.raises(ValidationError, match="database_url"):
        ServiceSettings(mode="production", api_tokens="a-real-token")


def test_production_with_real_credentials_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXM_MODE", "production")
    monkeypatch.setenv("CXM_API_TOKENS", "tok-1, tok-2")
    monkeypatch.setenv("CXM_DATABASE_URL", "postgresql+asyncpg://u:p@db/x")
    settings = ServiceSettings()
    assert settings.api_token_list() == ["tok-1", "tok-2"]
    assert "tok-1" not in repr(settings)  # secrets never show in logs or reprs
