"""Bearer-token auth for a service's HTTP API: the platform-wide API tokens
(``CXM_API_TOKENS``, ``ServiceSettings.api_token_list()``; ``dev-api-token`` in local mode),
read from ``request.app.state.settings``. Use as a router dependency::

    router = APIRouter(dependencies=[Depends(require_token)])
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cxm_shared.credentials import matches_any

_bearer = HTTPBearer(auto_error=False)


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    given = credentials.credentials if credentials is not None else ""
    valid = request.app.state.settings.api_token_list()
    if not matches_any(given, valid):  # constant time, see credentials.py
        raise HTTPException(
            status_code=401,
            detail="Authorization: a valid Bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
