"""Alert routes: list/filter, get, ack, resolve, assign, route test."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from cxm_alerting import metrics
from cxm_alerting.alerts import service
from cxm_alerting.alerts.schemas import ActorIn, AlertOut, AssignIn, RouteTestIn
from cxm_alerting.auth import require_token
from cxm_alerting.routing.match import explain
from cxm_alerting.routing.matchers import ALERT_LABELS

router = APIRouter(prefix="/v1", tags=["alerts"], dependencies=[Depends(require_token)])

Status = Literal["open", "acknowledged", "resolved", "suppressed"]


@router.get("/alerts", response_model=list[AlertOut], summary="List alerts, newest first")
async def list_alerts(
    request: Request,
    team: Annotated[str | None, Query(description="receiver the alert reached")] = None,
    status: Status | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    async with request.app.state.engine.connect() as conn:
        return await service.list_alerts(
            conn=conn, team=team, status=status, kind=kind, limit=limit
        )


@router.get("/alerts/{alert_id}", response_model=AlertOut, summary="One alert with its journey")
async def get_alert(request: Request, alert_id: str) -> dict[str, Any]:
    async with request.app.state.engine.connect() as conn:
        return service.alert_view(await service.get(conn=conn, alert_id=alert_id))


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut, summary="Acknowledge")
async def acknowledge(request: Request, alert_id: str, body: ActorIn) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        done = await service.acknowledge(
            conn=conn, alert_id=alert_id, by=body.by, now=datetime.now(UTC)
        )
    if done.time_to_ack is not None:
        metrics.TIME_TO_ACK.labels(done.team).observe(max(done.time_to_ack, 0.0))
    if done.sla_breached:
        metrics.SLA_BREACHES.labels(done.team).inc()
    request.app.state.wakeup.notify()
    return done.view


@router.post("/alerts/{alert_id}/resolve", response_model=AlertOut, summary="Resolve")
async def resolve(request: Request, alert_id: str, body: ActorIn) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        done = await service.resolve(
            conn=conn,
            tree=request.app.state.tree,
            alert_id=alert_id,
            by=body.by,
            now=datetime.now(UTC),
        )
    request.app.state.wakeup.notify()
    return done.view


@router.post("/alerts/{alert_id}/assign", response_model=AlertOut, summary="Assign to a person")
async def assign(request: Request, alert_id: str, body: AssignIn) -> dict[str, Any]:
    async with request.app.state.engine.begin() as conn:
        done = await service.assign(
            conn=conn, alert_id=alert_id, assignee=body.assignee, now=datetime.now(UTC)
        )
    request.app.state.wakeup.notify()
    return done.view


@router.post(
    "/routes/test",
    summary="Which team(s) an alert with these labels would reach, and why",
)
async def route_test(request: Request, body: RouteTestIn) -> dict[str, Any]:
    unknown = sorted(set(body.labels) - ALERT_LABELS)
    if unknown:
        raise HTTPException(
            status_code=422,
            detail=f"labels: unknown label(s) {', '.join(unknown)}; known: "
            + ", ".join(sorted(ALERT_LABELS)),
        )
    tree = request.app.state.tree
    result = explain(tree, {str(k): v for k, v in body.labels.items()}).as_dict()
    mutes = [
        {"inhibit_rule": index, "equal": rule.equal}
        for index, rule in enumerate(tree.inhibit_rules)
        if all(m.matches(body.labels) for m in rule.target_matchers)
    ]
    result["inhibitable_by"] = mutes
    return result
