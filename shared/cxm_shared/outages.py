"""Kafka or PostgreSQL not answering is the platform's problem, not the client's, and it
passes: an API answers 503 with ``Retry-After`` (never a 500), and the next request after the
dependency is back succeeds, because every client used here reconnects by itself.

:func:`unavailable_dependency` tells such errors from bugs; :func:`install_outage_handlers`
maps them to 503 in a FastAPI app.
"""

from __future__ import annotations

import logging
import re

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cxm_shared.errors import DependencyUnavailable

log = logging.getLogger(__name__)

# SQLSTATE classes and codes that mean "the server is not there right now": connection
# exceptions (08), admin/crash shutdown and "starting up" (57P01-57P03), too many connections.
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300")


def _sqlstate_unavailable(error: BaseException) -> bool:
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)


def unavailable_dependency(error: BaseException) -> str | None:
    """``"postgres"``, ``"kafka"`` (``"a dependency"`` for a bare socket error) when ``error``
    means that dependency does not answer (refused, reset, shutting down, timed out); None for
    anything else (a bug, bad SQL)."""
    if isinstance(error, DependencyUnavailable):
        return error.dependency
    if isinstance(error, KafkaError):
        return "kafka"
    if isinstance(error, PoolTimeout):
        return "postgres"
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return "postgres"
        orig = error.orig
        cause = getattr(orig, "__cause__", None)
        for candidate in (orig, cause):
            if candidate is not None and unavailable_dependency(candidate) is not None:
                return "postgres"
        return None
    if isinstance(error, asyncpg.InterfaceError | asyncpg.PostgresConnectionError):
        return "postgres"
    if isinstance(error, asyncpg.PostgresError):
        return "postgres" if _sqlstate_unavailable(error) else None
    if isinstance(error, OSError):  # refused, reset, unreachable, TimeoutError
        return "a dependency"
    return None


_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# PostgreSQL text cannot hold NUL: "invalid byte sequence" (22021), "unsupported Unicode
# escape sequence" in jsonb (22P05). The client's input, not an outage.
_NUL_SQLSTATES = ("22021", "22P05")


def _text_refused(error: BaseException) -> bool:
    for candidate in (error, getattr(error, "orig", None), getattr(error, "__cause__", None)):
        cause = getattr(candidate, "__cause__", None)
        for e in (candidate, cause):
            if getattr(e, "sqlstate", None) in _NUL_SQLSTATES:
                return True
    return False


def _nul_locations(request: Request) -> list[list[str]]:
    found = [["path", k] for k, v in request.path_params.items() if "\x00" in str(v)]
    found += [["query", k] for k, v in request.query_params.multi_items() if "\x00" in v]
    return found or [["body"]]


def install_outage_handlers(app: FastAPI, *, retry_after: int = 5) -> None:
    """Answer 503 + ``Retry-After`` when a route fails because Kafka or PostgreSQL does not
    answer; any other error stays a 500 (it is a bug to fix, not an outage). Text the
    database cannot store (NUL characters) is the client's error: 422 naming where it was."""

    async def unavailable(request: Request, error: Exception) -> JSONResponse:
        if _text_refused(error):
            detail = [
                {
                    "loc": loc,
                    "msg": "must not contain NUL (\\u0000) characters",
                    "type": "value_error",
                }
                for loc in _nul_locations(request)
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        dependency = unavailable_dependency(error)
        if dependency is None:
            raise error
        # The error class only: driver messages can carry query parameters.
        log.warning(
            "dependency unavailable dependency=%s route=%s error=%s",
            dependency,
            request.scope.get("route").path if request.scope.get("route") else "?",
            type(error).__name__,
        )
        return JSONResponse(
            {"detail": f"{dependency}: unavailable right now; retry in {retry_after} s"},
            status_code=503,
            headers={"Retry-After": str(retry_after)},
        )

    for kind in (
        DependencyUnavailable,
        KafkaError,
        PoolTimeout,
        DBAPIError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        OSError,
    ):
        app.add_exception_handler(kind, unavailable)


def _quiet_error(error: dict[str, object]) -> dict[str, object]:
    """One validation error without the input it refused: ``loc``, ``msg`` and ``type``. A
    dict key that failed validation is input too: named only when it looks like a field
    name (a typo such as ``sevrity`` helps the caller; an e-mail address is ``<key>``)."""
    loc = list(error.get("loc", ()))  # type: ignore[call-overload]
    for i in range(len(loc) - 1):
        if loc[i + 1] == "[key]" and not _FIELD_NAME.fullmatch(str(loc[i])):
            loc[i] = "<key>"
    return {"loc": loc, "msg": error.get("msg", ""), "type": error.get("type", "value_error")}


async def _validation_failed(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    detail = [_quiet_error(e) for e in error.errors()]
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)


def install_error_handlers(app: FastAPI, *, retry_after: int = 5) -> None:
    """The answers of a service's API to what is not its own bug: 503 + ``Retry-After``
    while a dependency is down (:func:`install_outage_handlers`), and 422 for invalid input
    naming each field without echoing the value (FastAPI's default repeats the input, which
    may be an e-mail address or a comment, into responses and whatever logs them)."""
    install_outage_handlers(app, retry_after=retry_after)
    app.add_exception_handler(RequestValidationError, _validation_failed)
