"""Alert decisions and lifecycle. Every function runs inside the caller's transaction, so a
decision, its history entry, its outbox deliveries and its stream events commit together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cxm_alerting.config import AlertingSettings
from cxm_alerting.errors import InvalidTransition, NotFound
from cxm_alerting.journey.service import last_touchpoints
from cxm_alerting.models import alerts, deliveries
from cxm_alerting.notify.alerts import Alert
from cxm_alerting.notify.escalation import decide_escalation, sla_deadline
from cxm_alerting.notify.inhibition import Inhibitor
from cxm_alerting.notify.muting import first_mute
from cxm_alerting.notify.silences import Silencer
from cxm_alerting.routing.alert_ids import alert_id as make_alert_id
from cxm_alerting.routing.alert_ids import window_start
from cxm_alerting.routing.groups import group_key
from cxm_alerting.routing.match import explain
from cxm_alerting.routing.matchers import ALERT_LABELS
from cxm_alerting.routing.tree import RoutingTree
from cxm_alerting.silences import service as silences_service
from cxm_alerting.stream.service import append_event
from cxm_shared.events import Signal

OPEN = "open"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
SUPPRESSED = "suppressed"  # muted by a silence or an inhibition when it was raised
FIRING_STATES = (OPEN, ACKNOWLEDGED)

_REASONS = {
    "negative_feedback": "Negative feedback from the customer",
    "detractor": "The customer answered as an NPS detractor",
    "low_csat": "Low satisfaction (CSAT) after an interaction",
    "high_effort": "High customer effort (CES)",
    "churn_risk_high": "Churn risk is high",
    "churn_risk_rising": "Churn risk is rising",
    "segment_entered": "The customer entered a watched segment",
    "segment_exited": "The customer left a watched segment",
}


@dataclass(frozen=True, slots=True)
class Decision:
    """What handling one signal did; metrics are recorded from it after commit."""

    alert_id: str
    action: str  # opened | reopened | updated | suppressed | duplicate
    kind: str
    team: str
    receivers: tuple[str, ...] = ()
    mute_kind: str | None = None
    outbox: int = 0
    streamed: tuple[str, ...] = field(default_factory=tuple)


def alert_labels(signal: Signal) -> dict[str, str]:
    labels = {k: str(v) for k, v in signal.labels.items() if k in ALERT_LABELS and v is not None}
    labels.update(kind=signal.kind, severity=signal.severity, customer_id=signal.customer_id)
    return labels


def evidence_entry(signal: Signal) -> dict[str, Any]:
    return {
        "signal_id": signal.signal_id,
        "kind": signal.kind,
        "severity": signal.severity,
        "occurred_at": signal.occurred_at.isoformat(),
        **{k: v for k, v in signal.evidence.items() if k not in ("scores", "churn_reasons")},
    }


def _reason(signal: Signal) -> str:
    explicit = signal.evidence.get("reason")
    return str(explicit) if explicit else _REASONS.get(signal.kind, signal.kind)


def _churn_reasons(signal: Signal) -> list[Any]:
    reasons = signal.evidence.get("churn_reasons") or signal.evidence.get("reasons") or []
    return list(reasons) if isinstance(reasons, list) else [reasons]


async def _content(
    *,
    conn: AsyncConnection,
    signal: Signal,
    settings: AlertingSettings,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    touchpoints, identifiers = await last_touchpoints(
        conn=conn, customer_id=signal.customer_id, limit=settings.journey_size
    )
    evidence = list((previous or {}).get("evidence") or [])
    evidence.append(evidence_entry(signal))
    scores = dict((previous or {}).get("scores") or {})
    scores.update(signal.evidence.get("scores") or {})
    base = settings.profile_base_url.rstrip("/")
    return {
        "reason": _reason(signal),
        "evidence": evidence[-20:],
        "scores": scores,
        "churn_reasons": _churn_reasons(signal)
        or list((previous or {}).get("churn_reasons") or []),
        "customer": {"customer_id": signal.customer_id, "identifiers": identifiers},
        "last_touchpoints": touchpoints,
        "profile_url": f"{base}/v1/profiles/{signal.customer_id}",
        "starts_at": (previous or {}).get("starts_at") or signal.occurred_at.isoformat(),
    }


async def _firing_alerts_of(
    *, conn: AsyncConnection, customer_id: str, exclude: str
) -> list[Alert]:
    rows = await conn.execute(
        select(alerts.c.alert_id, alerts.c.labels, alerts.c.created_at).where(
            alerts.c.customer_id == customer_id,
            alerts.c.status.in_(FIRING_STATES),
            alerts.c.alert_id != exclude,
        )
    )
    return [Alert(alert_id=r.alert_id, labels=r.labels, starts_at=r.created_at) for r in rows]


async def _enqueue(
    *,
    conn: AsyncConnection,
    tree: RoutingTree,
    alert: str,
    receivers: Sequence[str],
    event: str,
    msg_id: str,
    view: dict[str, Any],
    resolved_only: bool = False,
) -> tuple[int, list[str]]:
    """Outbox rows for every channel of ``receivers`` and an event on each SSE team stream."""
    rows: list[dict[str, Any]] = []
    streamed: list[str] = []
    for name in receivers:
        receiver = tree.receivers.get(name)
        if receiver is None:
            continue
        for index, hook in enumerate(receiver.webhook_configs):
            if not resolved_only or hook.send_resolved:
                rows.append(dict(channel="webhook", config_index=index, receiver=name))
        for index, mail in enumerate(receiver.email_configs):
            if not resolved_only or mail.send_resolved:
                rows.append(dict(channel="email", config_index=index, receiver=name))
        if receiver.sse:
            await append_event(conn=conn, team=name, event=event, alert_id=alert, data=view)
            streamed.append(name)
    if rows:
        await conn.execute(
            deliveries.insert(),
            [dict(r, alert_id=alert, msg_id=msg_id, event=event) for r in rows],
        )
    return len(rows), streamed


def _history(row_history: list[Any] | None, entry: dict[str, Any]) -> list[Any]:
    return [*(row_history or []), entry][-50:]


async def raise_from_signal(
    *,
    conn: AsyncConnection,
    signal: Signal,
    tree: RoutingTree,
    settings: AlertingSettings,
    now: datetime,
) -> Decision:
    """Turn one signal into an alert decision: route, mute, upsert, enqueue notifications."""
    window = timedelta(seconds=settings.alert_window_seconds)
    start = window_start(at=signal.occurred_at, window=window)
    aid = make_alert_id(kind=signal.kind, customer_id=signal.customer_id, window_start=start)
    existing = (
        await conn.execute(select(alerts).where(alerts.c.alert_id == aid).with_for_update())
    ).first()
    if existing is not None and any(
        e.get("signal_id") == signal.signal_id for e in existing.payload.get("evidence") or []
    ):
        return Decision(aid, "duplicate", signal.kind, existing.team)

    labels = alert_labels(signal)
    explanation = explain(tree, labels)
    receivers = explanation.receivers
    team = receivers[0]
    route = explanation.matches[0].route
    muters = [
        Silencer.build(silences=await silences_service.active(conn=conn, now=now)),
        Inhibitor.build(
            rules=tree.inhibit_rules,
            alerts=await _firing_alerts_of(conn=conn, customer_id=signal.customer_id, exclude=aid),
        ),
    ]
    mute = first_mute(labels=labels, muters=muters, now=now)
    content = await _content(
        conn=conn,
        signal=signal,
        settings=settings,
        previous=existing.payload if existing is not None else None,
    )
    record = {
        "at": now.isoformat(),
        "signal_id": signal.signal_id,
        "receivers": receivers,
        "route": route.path,
        "muted": mute.reason if mute else None,
    }
    deadline = sla_deadline(assigned_at=now, ack_sla=tree.receivers[team].ack_sla)

    if existing is None:
        status = SUPPRESSED if mute else OPEN
        record["action"] = "suppressed" if mute else "opened"
        values = dict(
            alert_id=aid,
            kind=signal.kind,
            customer_id=signal.customer_id,
            status=status,
            severity=signal.severity,
            team=team,
            receivers=receivers,
            labels=labels,
            group_key=group_key(route=route, labels=labels),
            window_start=start,
            assigned_at=now,
            sla_deadline=None if mute else deadline,
            muted_by=mute.reason if mute else None,
            payload={**content, "opened_at": now.isoformat()},
            history=[record],
            created_at=now,
            updated_at=now,
        )
        await conn.execute(alerts.insert().values(**values))
        if mute:
            return Decision(aid, "suppressed", signal.kind, team, tuple(receivers), mute.kind.value)
        view = alert_view(values)
        outbox, streamed = await _enqueue(
            conn=conn,
            tree=tree,
            alert=aid,
            receivers=receivers,
            event="firing",
            msg_id=aid,
            view=view,
        )
        return Decision(
            aid, "opened", signal.kind, team, tuple(receivers), None, outbox, tuple(streamed)
        )

    reopen = existing.status in (RESOLVED, SUPPRESSED) and mute is None
    if not reopen:
        # Still firing (or still muted): new evidence enriches the alert, no new notification.
        record["action"] = "evidence added"
        await conn.execute(
            update(alerts)
            .where(alerts.c.alert_id == aid)
            .values(
                payload={**existing.payload, **content},
                history=_history(existing.history, record),
                updated_at=now,
            )
        )
        return Decision(aid, "updated", signal.kind, existing.team, tuple(existing.receivers))

    first_time = (
        existing.status == SUPPRESSED
        and existing.reopen_count == 0
        and (existing.acked_at is None and existing.resolved_at is None)
    )
    count = existing.reopen_count + (0 if first_time else 1)
    record["action"] = "opened (mute ended)" if first_time else "reopened"
    values = dict(
        status=OPEN,
        severity=signal.severity,
        team=team,
        receivers=receivers,
        labels=labels,
        assigned_at=now,
        acked_at=None,
        acked_by=None,
        resolved_at=None,
        resolved_by=None,
        sla_deadline=deadline,
        muted_by=None,
        reopen_count=count,
        payload={**existing.payload, **content, "opened_at": now.isoformat()},
        history=_history(existing.history, record),
        updated_at=now,
    )
    await conn.execute(update(alerts).where(alerts.c.alert_id == aid).values(**values))
    event = "firing" if first_time else "reopened"
    msg_id = aid if first_time else f"{aid}.reopened{count}"
    view = alert_view({**dict(existing._mapping), **values})
    outbox, streamed = await _enqueue(
        conn=conn,
        tree=tree,
        alert=aid,
        receivers=receivers,
        event=event,
        msg_id=msg_id,
        view=view,
    )
    action = "opened" if first_time else "reopened"
    return Decision(aid, action, signal.kind, team, tuple(receivers), None, outbox, tuple(streamed))


def alert_view(row: Any) -> dict[str, Any]:
    """The JSON view of an alert (API, SSE, payload rendering)."""
    data = dict(row) if not hasattr(row, "_mapping") else dict(row._mapping)
    payload = data.get("payload") or {}

    def iso(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    return {
        "alert_id": data["alert_id"],
        "kind": data["kind"],
        "severity": data.get("severity"),
        "status": data.get("status"),
        "team": data.get("team"),
        "receivers": list(data.get("receivers") or []),
        "labels": dict(data.get("labels") or {}),
        "group_key": data.get("group_key"),
        "assignee": data.get("assignee"),
        "created_at": iso(data.get("created_at")),
        "updated_at": iso(data.get("updated_at")),
        "acked_at": iso(data.get("acked_at")),
        "acked_by": data.get("acked_by"),
        "resolved_at": iso(data.get("resolved_at")),
        "resolved_by": data.get("resolved_by"),
        "sla_deadline": iso(data.get("sla_deadline")),
        "sla_breaches": data.get("sla_breaches", 0),
        "reopen_count": data.get("reopen_count", 0),
        "muted_by": data.get("muted_by"),
        "history": list(data.get("history") or []),
        **{
            k: payload.get(k)
            for k in (
                "reason",
                "evidence",
                "scores",
                "churn_reasons",
                "customer",
                "last_touchpoints",
                "profile_url",
                "starts_at",
                "opened_at",
            )
        },
    }


async def get(*, conn: AsyncConnection, alert_id: str, lock: bool = False) -> Any:
    query = select(alerts).where(alerts.c.alert_id == alert_id)
    row = (await conn.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound(f"alert {alert_id} not found")
    return row


async def list_alerts(
    *,
    conn: AsyncConnection,
    team: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    conditions = []
    if team:
        conditions.append(alerts.c.receivers.contains([team]))
    if status:
        conditions.append(alerts.c.status == status)
    if kind:
        conditions.append(alerts.c.kind == kind)
    rows = await conn.execute(
        select(alerts)
        .where(and_(True, *conditions))
        .order_by(alerts.c.updated_at.desc())
        .limit(limit)
    )
    return [alert_view(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Transition:
    view: dict[str, Any]
    team: str
    time_to_ack: float | None = None
    sla_breached: bool = False


async def acknowledge(
    *, conn: AsyncConnection, alert_id: str, by: str, now: datetime
) -> Transition:
    row = await get(conn=conn, alert_id=alert_id, lock=True)
    if row.status != OPEN:
        raise InvalidTransition(f"alert is {row.status}; only an open alert can be acknowledged")
    breached = row.sla_deadline is not None and now > row.sla_deadline
    opened = datetime.fromisoformat(row.payload.get("opened_at") or row.created_at.isoformat())
    values = dict(
        status=ACKNOWLEDGED,
        acked_at=now,
        acked_by=by,
        sla_deadline=None,
        sla_breaches=row.sla_breaches + (1 if breached else 0),
        assignee=row.assignee or by,
        history=_history(row.history, {"at": now.isoformat(), "action": "acknowledged"}),
        updated_at=now,
    )
    return await _transition(
        conn=conn,
        row=row,
        values=values,
        event="acknowledged",
        ttack=(now - opened).total_seconds(),
        breached=breached,
    )


async def resolve(
    *, conn: AsyncConnection, tree: RoutingTree, alert_id: str, by: str, now: datetime
) -> Transition:
    row = await get(conn=conn, alert_id=alert_id, lock=True)
    if row.status not in FIRING_STATES:
        raise InvalidTransition(f"alert is {row.status}; only a firing alert can be resolved")
    values = dict(
        status=RESOLVED,
        resolved_at=now,
        resolved_by=by,
        sla_deadline=None,
        history=_history(row.history, {"at": now.isoformat(), "action": "resolved"}),
        updated_at=now,
    )
    transition = await _transition(conn=conn, row=row, values=values, event=None)
    await _enqueue(
        conn=conn,
        tree=tree,
        alert=alert_id,
        receivers=list(row.receivers),
        event="resolved",
        msg_id=f"{alert_id}.resolved{row.reopen_count}",
        view=transition.view,
        resolved_only=True,
    )
    return transition


async def assign(
    *, conn: AsyncConnection, alert_id: str, assignee: str, now: datetime
) -> Transition:
    row = await get(conn=conn, alert_id=alert_id, lock=True)
    if row.status == RESOLVED:
        raise InvalidTransition("alert is resolved; re-open it before assigning")
    values = dict(
        assignee=assignee,
        history=_history(row.history, {"at": now.isoformat(), "action": "assigned"}),
        updated_at=now,
    )
    return await _transition(conn=conn, row=row, values=values, event="assigned")


async def _transition(
    *,
    conn: AsyncConnection,
    row: Any,
    values: dict[str, Any],
    event: str | None,
    ttack: float | None = None,
    breached: bool = False,
) -> Transition:
    await conn.execute(update(alerts).where(alerts.c.alert_id == row.alert_id).values(**values))
    view = alert_view({**dict(row._mapping), **values})
    if event is not None:
        for team in row.receivers:
            await append_event(conn=conn, team=team, event=event, alert_id=row.alert_id, data=view)
    return Transition(view=view, team=row.team, time_to_ack=ttack, sla_breached=breached)


@dataclass(frozen=True, slots=True)
class Escalation:
    alert_id: str
    from_team: str
    to_team: str
    breached_teams: tuple[str, ...]


async def escalate_due(
    *, conn: AsyncConnection, tree: RoutingTree, now: datetime, limit: int = 100
) -> list[Escalation]:
    """Move open alerts whose holder missed its ack SLA to the next receiver."""
    rows = (
        await conn.execute(
            select(alerts)
            .where(alerts.c.status == OPEN, alerts.c.sla_deadline <= now)
            .order_by(alerts.c.sla_deadline)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    done: list[Escalation] = []
    for row in rows:
        if row.team not in tree.receivers:
            await conn.execute(
                update(alerts).where(alerts.c.alert_id == row.alert_id).values(sla_deadline=None)
            )
            continue
        decision = decide_escalation(
            receiver=row.team,
            assigned_at=row.assigned_at,
            acked_at=None,
            receivers=tree.receivers,
            now=now,
        )
        breached = tuple(b.receiver for b in decision.breaches)
        receivers = list(dict.fromkeys([*row.receivers, decision.receiver]))
        values = dict(
            team=decision.receiver,
            assigned_at=decision.assigned_at,
            sla_deadline=decision.next_deadline,
            sla_breaches=row.sla_breaches + len(breached),
            receivers=receivers,
            history=_history(
                row.history,
                {
                    "at": now.isoformat(),
                    "action": "escalated" if decision.escalate else "sla breached",
                    "from": row.team,
                    "to": decision.receiver,
                    "breached": list(breached),
                },
            ),
            updated_at=now,
        )
        await conn.execute(update(alerts).where(alerts.c.alert_id == row.alert_id).values(**values))
        if decision.escalate:
            level = row.sla_breaches + len(breached)
            view = alert_view({**dict(row._mapping), **values})
            await _enqueue(
                conn=conn,
                tree=tree,
                alert=row.alert_id,
                receivers=[decision.receiver],
                event="escalated",
                msg_id=f"{row.alert_id}.escalated{level}",
                view=view,
            )
        done.append(Escalation(row.alert_id, row.team, decision.receiver, breached))
    return done


async def open_counts(*, conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(
        select(alerts.c.team, func.count()).where(alerts.c.status == OPEN).group_by(alerts.c.team)
    )
    return {team: int(count) for team, count in rows}
