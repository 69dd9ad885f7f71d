"""What the services' error handlers (``cxm_shared.outages``) answer, without Kafka or
PostgreSQL: an outage is a 503 with ``Retry-After``, a bug stays a 500, text PostgreSQL
cannot store is a 422 naming where it was, and a validation error names the field without
repeating the input."""

from __future__ import annotations

from typing import Annotated

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from fastapi import FastAPI, Query
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, OperationalError

from cxm_shared.errors import DependencyUnavailable
from cxm_shared.outages import install_error_handlers, unavailable_dependency


def _nul_error() -> Exception:
    error = asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00")
    return DBAPIError("SELECT ...", {}, error)


OUTAGES: list[tuple[str, Exception, str]] = [
    ("refused", ConnectionRefusedError(111, "Connection refused"), "a dependency"),
    ("timeout", TimeoutError(), "a dependency"),
    (
        "pg starting",
        asyncpg.CannotConnectNowError("the database system is starting up"),
        "postgres",
    ),
    ("pg closed", asyncpg.ConnectionDoesNotExistError("connection was closed"), "postgres"),
    ("pg admin shutdown", asyncpg.AdminShutdownError("terminating connection"), "postgres"),
    (
        "sqlalchemy invalidated",
        DBAPIError("SELECT 1", {}, ConnectionResetError(), connection_invalidated=True),
        "postgres",
    ),
    ("sqlalchemy wrapping", OperationalError("SELECT 1", {}, ConnectionRefusedError()), "postgres"),
    ("kafka down", KafkaConnectionError(), "kafka"),
    ("kafka timeout", KafkaTimeoutError(), "kafka"),
    ("declared", DependencyUnavailable("kafka", "no leader"), "kafka"),
]
BUGS: list[tuple[str, Exception]] = [
    ("value error", ValueError("bug")),
    ("unique violation", asyncpg.UniqueViolationError("duplicate key")),
    ("bad sql", DBAPIError("SELEC 1", {}, asyncpg.PostgresSyntaxError("syntax error"))),
]


@pytest.mark.parametrize(("name", "error", "dependency"), OUTAGES, ids=[o[0] for o in OUTAGES])
def test_outages_are_recognised(name: str, error: Exception, dependency: str) -> None:
    assert unavailable_dependency(error) == dependency


@pytest.mark.parametrize(("name", "error"), BUGS, ids=[b[0] for b in BUGS])
def test_bugs_are_not_outages(name: str, error: Exception) -> None:
    assert unavailable_dependency(error) is None


class Body(BaseModel):
    email: str
    nps: int


def app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, retry_after=7)

    @app.get("/fail/{item}")
    async def fail(item: str, team: Annotated[str | None, Query()] = None) -> None:
        raise error

    @app.post("/body")
    async def body(payload: Body) -> None:
        return None

    return app


async def answer(app: FastAPI, method: str, url: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return await client.request(method, url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "error", "dependency"), OUTAGES, ids=[o[0] for o in OUTAGES])
async def test_an_outage_is_503_with_retry_after(name: str, error: Exception, dependency: str):
    response = await answer(app_raising(error), "GET", "/fail/x")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.json()["detail"].startswith(dependency)


@pytest.mark.parametrize(("name", "error"), BUGS, ids=[b[0] for b in BUGS])
async def test_a_bug_stays_a_500(name: str, error: Exception) -> None:
    assert (await answer(app_raising(error), "GET", "/fail/x")).status_code == 500


async def test_nul_text_is_422_naming_where_it_was() -> None:
    response = await answer(app_raising(_nul_error()), "GET", "/fail/x", params={"team": "a\0b"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "team"]


async def test_validation_errors_name_the_field_without_echoing_input() -> None:
    secret = "hanako.canary@example.com"
    response = await answer(
        app_raising(ValueError()), "POST", "/body", json={"email": secret, "nps": secret}
    )
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "nps"]]
    assert secret not in response.text
