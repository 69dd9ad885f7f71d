"""``GET /v1/teams/{team}/stream``: server-sent events per team, resumable with
``Last-Event-ID`` (event ids are the team stream's gap-free sequence)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from sse_starlette import EventSourceResponse

from cxm_alerting.auth import require_token_or_query
from cxm_alerting.stream.service import events_after, wait_for

router = APIRouter(
    prefix="/v1/teams", tags=["stream"], dependencies=[Depends(require_token_or_query)]
)


@router.get(
    "/{team}/stream",
    summary="Live alert events for a team (text/event-stream); resume with Last-Event-ID",
    response_class=EventSourceResponse,
)
async def team_stream(
    request: Request,
    team: str,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, description="resume after this id")] = None,
) -> EventSourceResponse:
    if team not in request.app.state.tree.receivers:
        raise HTTPException(status_code=404, detail=f"team: unknown team {team!r}")
    start = after or 0
    if last_event_id:
        if not last_event_id.isdigit():
            raise HTTPException(status_code=400, detail="Last-Event-ID: must be an integer")
        start = int(last_event_id)
    engine = request.app.state.engine
    wakeup = request.app.state.wakeup
    poll = request.app.state.settings.delivery_poll_seconds

    async def events() -> AsyncIterator[dict[str, Any]]:
        cursor = start
        wake = wakeup.subscribe()
        try:
            while True:
                async with engine.connect() as conn:
                    rows = await events_after(conn=conn, team=team, after=cursor)
                for row in rows:
                    cursor = row["seq"]
                    yield {
                        "id": str(row["seq"]),
                        "event": row["event"],
                        "data": orjson.dumps(row["data"]).decode(),
                    }
                if not rows:
                    await wait_for(wake, poll)
        finally:
            wakeup.unsubscribe(wake)

    return EventSourceResponse(events(), ping=15, send_timeout=30)
