"""Silences CRUD (expiry by time range)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request

from cxm_alerting.auth import require_token
from cxm_alerting.silences import service
from cxm_alerting.silences.schemas import SilenceIn, SilenceOut

router = APIRouter(prefix="/v1/silences", tags=["silences"], dependencies=[Depends(require_token)])


@router.get("", response_model=list[SilenceOut], summary="All silences with their state")
async def list_silences(request: Request) -> list[SilenceOut]:
    now = datetime.now(UTC)
    async with request.app.state.engine.connect() as conn:
        return [service.to_out(s, now=now) for s in await service.list_all(conn=conn)]


@router.post("", response_model=SilenceOut, status_code=201, summary="Create a silence")
async def create_silence(request: Request, body: SilenceIn) -> SilenceOut:
    now = datetime.now(UTC)
    async with request.app.state.engine.begin() as conn:
        silence = await service.create(conn=conn, body=body, now=now)
    request.app.state.silence_cache.invalidate()
    return service.to_out(silence, now=now)


@router.get("/{silence_id}", response_model=SilenceOut, summary="One silence")
async def get_silence(request: Request, silence_id: str) -> SilenceOut:
    async with request.app.state.engine.connect() as conn:
        silence = await service.get(conn=conn, silence_id=silence_id)
    return service.to_out(silence, now=datetime.now(UTC))


@router.delete("/{silence_id}", response_model=SilenceOut, summary="Expire a silence now")
async def expire_silence(request: Request, silence_id: str) -> SilenceOut:
    now = datetime.now(UTC)
    async with request.app.state.engine.begin() as conn:
        silence = await service.expire(conn=conn, silence_id=silence_id, now=now)
    request.app.state.silence_cache.invalidate()
    return service.to_out(silence, now=now)
