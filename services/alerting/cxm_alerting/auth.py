"""Bearer-token auth for the API (``settings.api_token_list()``). Browsers' EventSource
cannot send headers, so the SSE stream also accepts ``?token=``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cxm_shared.credentials import matches_any

_bearer = HTTPBearer(auto_error=False)


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The API's routes: the token in the Authorization header only."""
    _check(request, credentials.credentials if credentials is not None else None)


def require_token_or_query(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(description="for EventSource clients only")] = None,
) -> None:
    """The SSE stream: EventSource cannot send headers, so ``?token=`` too (only here: a
    token in a URL ends up in histories and proxy logs)."""
    _check(request, credentials.credentials if credentials is not None else token)


def _check(request: Request, given: str | None) -> None:
    valid = request.app.state.settings.api_token_list()
    if not matches_any(given, valid):
        raise HTTPException(
            status_code=401,
            detail="Authorization: a valid Bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
