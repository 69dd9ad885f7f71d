"""Bearer-token auth for the API (``settings.api_token_list()``). Browsers' EventSource
cannot send headers, so the SSE stream also accepts ``?token=``."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False)


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(description="for EventSource clients only")] = None,
) -> None:
    given = credentials.credentials if credentials is not None else token
    valid = request.app.state.settings.api_token_list()
    if not given or not any(hmac.compare_digest(given.encode(), t.encode()) for t in valid):
        raise HTTPException(
            status_code=401,
            detail="Authorization: a valid Bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
