"""Auth, across the four services: which credentials open which API, and which never do.

- Every route of every service's API (read from its OpenAPI document, so a route added later
  is covered too) refuses a request with no credential, a malformed one, a wrong one, a
  revoked one and the credential of another kind (a write key as an API token and back):
  401, never a 2xx, a 403 or a 5xx.
- A write key identifies its source: events are recorded under the key's source and channel
  default, whatever the body claims.
- Secrets are compared in constant time: through ``hmac.compare_digest``, on equal-length
  digests (so the timing tells neither the length nor a prefix), against every configured
  secret when none matches.
- Outside local mode the dev credentials (``dev-write-key``, ``dev-api-token``) are refused:
  each service's settings fail, and ``python -m cxm_<service>`` exits at once naming the field.

In-process apps without their lifespan: authentication happens before any Kafka or
PostgreSQL access, so these tests need neither (the valid-credential cases use answers that
come before it, e.g. a 400/422 for a bad body).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from cxm_alerting.api import create_app as create_alerting
from cxm_alerting.config import AlertingSettings
from cxm_ingest.api import create_app as create_ingest
from cxm_ingest.config import IngestSettings, hash_write_key
from cxm_profile.api import create_app as create_profile
from cxm_profile.config import ProfileSettings
from cxm_scoring.api import create_app as create_scoring
from cxm_scoring.config import ScoringSettings
from cxm_shared.settings import DEV_API_TOKEN, DEV_WRITE_KEY

TOKENS = ("token-alpha-0001", "token-bravo-00002", "token-charlie-000003")
REVOKED = "token-revoked-0004"
WRITE_KEY = "write-key-web-0001"
POS_KEY = "write-key-pos-0002"
REVOKED_KEY = "write-key-revoked-0003"
# Production settings that are valid apart from what a test puts in.
PROD: dict[str, Any] = {
    "mode": "production",
    "database_url": "postgresql+asyncpg://svc:real-password@127.0.0.1:1/cxm",
    "api_tokens": ",".join(TOKENS),
}
OPERATIONS = {"/healthz", "/readyz", "/metrics"}  # open by design: probes and scraping


def b64(text: str) -> str:
    return base64.b64encode(text.encode("latin-1")).decode()


# Each: (name, headers). None of them may open any API route.
BAD_BEARER: list[tuple[str, dict[str, str]]] = [
    ("missing", {}),
    ("empty bearer", {"Authorization": "Bearer "}),
    ("scheme only", {"Authorization": "Bearer"}),
    ("other scheme", {"Authorization": f"Token {TOKENS[0]}"}),
    ("basic with the token", {"Authorization": f"Basic {b64(TOKENS[0] + ':')}"}),
    ("wrong", {"Authorization": "Bearer token-alpha-0002"}),
    ("prefix of a valid one", {"Authorization": f"Bearer {TOKENS[0][:-1]}"}),
    ("valid one plus a byte", {"Authorization": f"Bearer {TOKENS[0]}x"}),
    ("two tokens", {"Authorization": f"Bearer {TOKENS[0]},{TOKENS[1]}"}),
    ("non-ascii", {"Authorization": "Bearer t\u00f6ken-\u00e9"}),
    ("very long", {"Authorization": "Bearer " + "a" * 8192}),
    ("revoked", {"Authorization": f"Bearer {REVOKED}"}),
    ("dev token outside local mode", {"Authorization": f"Bearer {DEV_API_TOKEN}"}),
    ("a write key", {"Authorization": f"Bearer {WRITE_KEY}"}),
]

BAD_WRITE_KEY: list[tuple[str, dict[str, str]]] = [
    ("missing", {}),
    ("empty basic", {"Authorization": "Basic "}),
    ("not base64", {"Authorization": "Basic !!!not-base64!!!"}),
    ("empty user", {"Authorization": f"Basic {b64(':' + WRITE_KEY)}"}),
    ("key as password", {"Authorization": f"Basic {b64('x:' + WRITE_KEY)}"}),
    ("other scheme", {"Authorization": f"Digest {WRITE_KEY}"}),
    ("wrong", {"Authorization": f"Basic {b64('write-key-web-0009:')}"}),
    ("prefix of a valid one", {"Authorization": f"Basic {b64(WRITE_KEY[:-1] + ':')}"}),
    ("non-ascii", {"Authorization": "Basic " + b64("k\u00e9y:")}),
    ("revoked", {"Authorization": f"Basic {b64(REVOKED_KEY + ':')}"}),
    ("dev key outside local mode", {"Authorization": f"Basic {b64(DEV_WRITE_KEY + ':')}"}),
    ("an API token", {"Authorization": f"Bearer {TOKENS[0]}"}),
]


def write_keys(*keys: tuple[str, str, str]) -> str:
    return ",".join(f"{source}:{channel}:{hash_write_key(key)}" for source, channel, key in keys)


def ingest_settings(**extra: Any) -> IngestSettings:
    keys = write_keys(("web-site", "web", WRITE_KEY), ("pos", "store", POS_KEY))
    return IngestSettings(**PROD, write_keys=keys, **extra)


PROFILE_PROD = {"identifier_hash_key": "a-real-identifier-hash-key-0123456789"}


@dataclass
class Service:
    name: str
    build: Callable[[Path], FastAPI]  # given a data directory


SERVICES = [
    Service("ingest", lambda data: create_ingest(ingest_settings())),
    Service(
        "profile",
        lambda data: create_profile(ProfileSettings(**PROD, **PROFILE_PROD, data_dir=str(data))),
    ),
    Service(
        "scoring",
        lambda data: create_scoring(
            ScoringSettings(**PROD, table_store="memory://", data_dir=str(data))
        ),
    ),
    Service("alerting", lambda data: create_alerting(AlertingSettings(**PROD))),
]


@pytest.fixture(scope="module", params=SERVICES, ids=lambda s: s.name)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    service: Service = request.param
    built = service.build(tmp_path_factory.mktemp("auth-data"))
    built.state.service_name = service.name
    return built


def api_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path with every parameter filled) of every route in the OpenAPI document."""
    for path, item in app.openapi()["paths"].items():
        if path in OPERATIONS:
            continue
        concrete = path
        while "{" in concrete:
            start, end = concrete.index("{"), concrete.index("}")
            concrete = concrete[:start] + "x1" + concrete[end + 1 :]
        for method in item:
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method.upper(), concrete


async def call(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    # As bytes: a client may send any octets in a header, not only ASCII.
    headers = {k: v.encode("utf-8") for k, v in headers.items()}  # type: ignore[misc]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        body = {} if method in {"POST", "PUT", "PATCH"} else None
        return await client.request(method, path, json=body, headers=headers, timeout=10)


async def test_every_api_route_refuses_every_bad_credential(app: FastAPI) -> None:
    bad = BAD_WRITE_KEY if app.state.service_name == "ingest" else BAD_BEARER
    routes = list(api_routes(app))
    assert routes or app.state.service_name == "scoring", "no API route found"
    accepted = []
    for method, path in routes:
        answers = await asyncio.gather(*(call(app, method, path, h) for _, h in bad))
        for (name, _), response in zip(bad, answers, strict=True):
            if response.status_code != 401:
                accepted.append(f"{method} {path} [{name}]: {response.status_code}")
            else:
                assert "www-authenticate" in response.headers, (method, path, name)
    assert not accepted, "credentials not refused with 401:\n" + "\n".join(accepted)


async def test_valid_credentials_pass_authentication(app: FastAPI) -> None:
    """The counterpart of the refusals: with a configured credential, the same kind of
    request gets past auth (to an answer about the request itself)."""
    name = app.state.service_name
    if name == "ingest":
        for key in (WRITE_KEY, POS_KEY):
            headers = {"Authorization": f"Basic {b64(key + ':')}"}
            response = await call(app, "POST", "/v1/events", headers)
            assert response.status_code == 400, response.text  # {} is not an event
        return
    routes = list(api_routes(app))
    for token in TOKENS:
        for method, path in routes:
            if path.endswith("/stream"):
                continue  # an endless event stream once authenticated
            response = await call(app, method, path, {"Authorization": f"Bearer {token}"})
            assert response.status_code != 401, (method, path, response.text)


async def test_write_key_decides_the_source_not_the_body() -> None:
    """A key of one source cannot post as another: the touchpoint records the key's source,
    and the key's channel only where the event names none."""
    from cxm_ingest.events.service import normalise

    app = create_ingest(ingest_settings())
    keys = app.state.intake.keys
    pos = keys.authenticate(POS_KEY)
    web = keys.authenticate(WRITE_KEY)
    assert (pos.name, web.name) == ("pos", "web-site")
    from datetime import UTC, datetime, timedelta

    event = {
        "event_id": "e-1",
        "type": "page_view",
        "occurred_at": "2026-03-01T00:00:00Z",
        "identifiers": {"anonymous_id": "a-1"},
        "source": "web-site",
    }
    try:
        touchpoint, _ = normalise(
            event, source=pos, received_at=datetime.now(UTC), max_future=timedelta(hours=1)
        )
    except Exception as error:  # refusing the claimed source is as good as ignoring it
        assert "source" in str(getattr(error, "errors", error))
        return
    assert touchpoint["source"] == "pos"
    assert touchpoint["channel"] == "store"


class DigestSpy:
    """Records the argument lengths of every ``hmac.compare_digest`` call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self._real = hmac.compare_digest

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((len(a), len(b)))
        return self._real(a, b)


@pytest.mark.parametrize("service", ["ingest", "profile", "alerting", "scoring"])
async def test_secrets_are_compared_in_constant_time(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every configured secret goes through ``hmac.compare_digest`` (no ``==``, no early exit
    when nothing matches), on arguments of equal length whatever the caller sent."""
    app = next(s for s in SERVICES if s.name == service).build(tmp_path_factory.mktemp("data"))
    routes = list(api_routes(app))
    if not routes:
        pytest.skip(f"{service} has no authenticated API route")
    method, path = routes[0]
    spy = DigestSpy()
    monkeypatch.setattr(hmac, "compare_digest", spy)
    configured = 2 if service == "ingest" else len(TOKENS)
    for sent in ("short", "a-much-longer-credential-than-any-configured-one-" * 4):
        spy.calls.clear()
        if service == "ingest":
            headers = {"Authorization": f"Basic {b64(sent + ':')}"}
        else:
            headers = {"Authorization": f"Bearer {sent}"}
        response = await call(app, method, path, headers)
        assert response.status_code == 401
        assert len(spy.calls) >= configured, f"{service}: compared {len(spy.calls)} secrets"
        unequal = [c for c in spy.calls if c[0] != c[1]]
        assert not unequal, f"{service}: compare_digest on unequal lengths {unequal}"


@pytest.mark.parametrize(
    ("settings_class", "extra", "field"),
    [
        (IngestSettings, {"write_keys": write_keys(("dev", "web", DEV_WRITE_KEY))}, "write_keys"),
        (IngestSettings, {"api_tokens": f"{TOKENS[0]}, {DEV_API_TOKEN} "}, "api_tokens"),
        (ProfileSettings, {**PROFILE_PROD, "api_tokens": DEV_API_TOKEN}, "api_tokens"),
        (ProfileSettings, {}, "identifier_hash_key"),
        (ScoringSettings, {"api_tokens": f"{DEV_API_TOKEN},{TOKENS[0]}"}, "api_tokens"),
        (AlertingSettings, {"api_tokens": DEV_API_TOKEN}, "api_tokens"),
    ],
)
def test_settings_refuse_dev_credentials_outside_local_mode(
    settings_class: type, extra: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError, match=field):
        settings_class(**(PROD | extra))


def test_production_ingest_does_not_add_the_dev_key() -> None:
    entries = ingest_settings().write_key_entries()
    assert hash_write_key(DEV_WRITE_KEY) not in {digest for *_, digest in entries}
    assert {source for source, *_ in entries} == {"web-site", "pos"}


@pytest.mark.parametrize("service", ["ingest", "profile", "scoring", "alerting"])
def test_service_refuses_to_start_with_dev_credentials_in_production(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry point of ``python -m cxm_<service>``, in production mode with the dev API
    token, fails before it serves, naming the setting and without echoing the other
    settings (the database password is among them)."""
    import importlib

    import uvicorn

    for name in [k for k in os.environ if k.startswith("CXM_")]:
        monkeypatch.delenv(name)
    env = {
        "CXM_MODE": "production",
        "CXM_API_TOKENS": DEV_API_TOKEN,
        "CXM_DATABASE_URL": PROD["database_url"],
        "CXM_IDENTIFIER_HASH_KEY": PROFILE_PROD["identifier_hash_key"],
        "CXM_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", [f"cxm_{service}"])

    def must_not_serve(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{service} started serving with the dev API token")

    monkeypatch.setattr(uvicorn, "run", must_not_serve)
    entry = importlib.import_module(f"cxm_{service}.__main__")
    with pytest.raises(ValidationError) as refused:
        entry.main()
    message = str(refused.value)
    assert "api_tokens" in message
    assert "real-password" not in message and DEV_API_TOKEN not in message, message
