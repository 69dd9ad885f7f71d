"""Profile API routes (thin: parse, call the service, publish, shape the answer)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cxm_profile import metrics
from cxm_profile.errors import BadRequest
from cxm_profile.identity.identifiers import parse_identifiers
from cxm_profile.profiles import service
from cxm_profile.profiles.schemas import (
    Erasure,
    Profile,
    QuarantineDecision,
    UnmergeRequest,
    UnmergeResult,
)
from cxm_shared.credentials import matches_any

bearer = HTTPBearer(auto_error=False)
# How long a route waits for its change's announcement to reach Kafka before answering (the
# change is committed either way; the outbox relay sends what this wait could not).
OUTBOX_WAIT_S = 3.0


# async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request
# that was a third of a lookup's time.
async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    tokens: list[str] = request.app.state.api_tokens
    supplied = credentials.credentials if credentials else ""
    if not matches_any(supplied, tokens):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a valid API token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


router = APIRouter(prefix="/v1", tags=["profiles"], dependencies=[Depends(require_token)])


@router.get("/profiles/lookup", response_model=Profile)
async def lookup_profile(
    request: Request,
    type: Annotated[str, Query(min_length=1, max_length=64, description="identifier type")],
    value: Annotated[str, Query(min_length=1, max_length=512)],
) -> Response:
    started = time.perf_counter()
    settings = request.app.state.settings
    rules = settings.rules
    if type not in rules.types:
        raise BadRequest("type", f"unknown identifier type; one of {sorted(rules.types)}")
    parsed = parse_identifiers({type: value}, rules=rules, secret=settings.secret)
    if not parsed.accepted:
        raise BadRequest("value", parsed.ignored[0].reason)
    body = await service.profile_json_by_identifier(
        pool=request.app.state.read_pool, key=parsed.accepted[0].key
    )
    metrics.LOOKUP_SECONDS.labels(by="identifier").observe(time.perf_counter() - started)
    # Serialised once by orjson; the Profile schema documents it (returning a Response skips
    # re-validating what the service built).
    return Response(body, media_type="application/json")


@router.get("/profiles/{customer_id}", response_model=Profile)
async def get_profile(request: Request, customer_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    profile = await service.get_profile(engine=request.app.state.engine, customer_id=customer_id)
    metrics.LOOKUP_SECONDS.labels(by="id").observe(time.perf_counter() - started)
    return profile


@router.get("/profiles/{customer_id}/timeline")
async def get_timeline(
    request: Request,
    customer_id: str,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    return await service.get_timeline(
        engine=request.app.state.engine, customer_id=customer_id, cursor=cursor, limit=limit
    )


@router.get("/profiles/{customer_id}/merges")
async def explain_merges(request: Request, customer_id: str) -> dict[str, Any]:
    return await service.explain_merges(engine=request.app.state.engine, customer_id=customer_id)


@router.post("/merges/{merge_id}/unmerge", response_model=UnmergeResult)
async def unmerge(
    request: Request, merge_id: str, body: UnmergeRequest | None = None
) -> UnmergeResult:
    reason = (body or UnmergeRequest()).reason
    result = await service.unmerge(
        engine=request.app.state.engine,
        topics=request.app.state.topics,
        merge_id=merge_id,
        reason=reason,
    )
    await request.app.state.outbox.flush(timeout=OUTBOX_WAIT_S)
    return UnmergeResult(
        merge_id=merge_id,
        restored_customer_id=result.unmerge.loser_id,
        split_from_customer_id=result.split_from,
        unmerged_at=result.unmerge.unmerged_at,
    )


@router.get("/quarantine")
async def list_quarantine(
    request: Request,
    status: Literal["pending", "approved", "rejected"] = "pending",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    items = await service.list_quarantine(
        engine=request.app.state.engine, status=status, limit=limit
    )
    return {"items": items}


async def _decide(request: Request, quarantine_id: str, approve: bool) -> QuarantineDecision:
    merge = await service.decide_quarantine(
        engine=request.app.state.engine,
        topics=request.app.state.topics,
        quarantine_id=quarantine_id,
        approve=approve,
    )
    if merge is not None:
        await request.app.state.outbox.flush(timeout=OUTBOX_WAIT_S)
    return QuarantineDecision(
        quarantine_id=quarantine_id,
        status="approved" if approve else "rejected",
        merge_id=merge.merge_id if merge else None,
        customer_id=merge.winner_id if merge else None,
    )


@router.post("/quarantine/{quarantine_id}/approve", response_model=QuarantineDecision)
async def approve_quarantine(request: Request, quarantine_id: str) -> QuarantineDecision:
    return await _decide(request, quarantine_id, approve=True)


@router.post("/quarantine/{quarantine_id}/reject", response_model=QuarantineDecision)
async def reject_quarantine(request: Request, quarantine_id: str) -> QuarantineDecision:
    return await _decide(request, quarantine_id, approve=False)


@router.delete("/profiles/{customer_id}", response_model=Erasure)
async def erase_profile(request: Request, customer_id: str) -> Erasure:
    erased = await service.erase(
        engine=request.app.state.engine, topics=request.app.state.topics, customer_id=customer_id
    )
    # Committed with its announcement in the outbox: sent now, or by the relay's next retry.
    await request.app.state.outbox.flush(timeout=OUTBOX_WAIT_S)
    return Erasure(request_id=erased.request_id, erased_customer_ids=list(erased.customer_ids))
