"""The error answers every route can give, written into a service's OpenAPI document, so a
client (and the schemathesis fuzzing in tests/security) knows them: 401 where the route needs
a credential, 404 where it names a resource, 409 where it changes one, 503 + ``Retry-After``
while Kafka or PostgreSQL is down (see ``cxm_shared.outages``); and a 405 whose ``Allow``
names every method the document gives the path."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import Match, Route

_ERROR = {
    "type": "object",
    "properties": {"detail": {}},
    "description": "what is wrong, naming the field where there is one",
}
_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}
}
_OPEN = {"/healthz", "/readyz", "/metrics"}


def _answer(description: str, *, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _refuse_nul(schema: dict[str, Any]) -> None:
    """Text parameters cannot carry NUL (PostgreSQL cannot store it; see outages.py)."""
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "string" and "pattern" not in option and "enum" not in option:
            option["pattern"] = "^[^\\x00]*$"


def document_error_responses(
    app: FastAPI,
    *,
    secured: bool = True,
    extra: dict[int, str] | None = None,
    skip: Iterable[str] = (),
) -> None:
    """Add the common error answers to every operation of ``app``'s OpenAPI document (built
    once, on first request). ``secured``: every route outside /healthz, /readyz and /metrics
    needs a credential. ``extra``: status -> description for every API route (e.g. the
    ingest's 413/415/429). Answers a route documents itself are left as they are."""
    build = app.openapi
    skipped = set(skip)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, item in schema.get("paths", {}).items():
            if path in skipped:
                continue
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                for parameter in operation.get("parameters", []):
                    _refuse_nul(parameter.get("schema", {}))
                wanted: dict[str, dict[str, Any]] = {
                    "503": _answer(
                        "Kafka or PostgreSQL does not answer; retry later", headers=_RETRY_AFTER
                    )
                }
                if path not in _OPEN:
                    if secured:
                        wanted["401"] = _answer("missing or invalid credential")
                    if "{" in path:
                        wanted["404"] = _answer("no such resource")
                        if method in ("post", "put", "patch", "delete"):
                            wanted["409"] = _answer("the resource's state does not allow this")
                    if operation.get("parameters") or operation.get("requestBody"):
                        wanted["400"] = _answer("invalid input")
                    for status, description in (extra or {}).items():
                        wanted[str(status)] = _answer(description)
                for status, answer in wanted.items():
                    responses.setdefault(status, answer)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(405, _method_not_allowed)


async def _method_not_allowed(request: Request, error: Exception) -> JSONResponse:
    """405 with ``Allow`` naming every method of the path: FastAPI registers one route per
    method, and Starlette's own answer names only the first route's methods."""
    allowed: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "__none__"})
        if match is not Match.NONE and isinstance(route, APIRoute | Route):
            allowed |= route.methods or set()
    if "GET" in allowed:
        allowed.add("HEAD")
    return JSONResponse(
        {"detail": "Method Not Allowed"},
        status_code=405,
        headers={"Allow": ", ".join(sorted(allowed))},
    )
