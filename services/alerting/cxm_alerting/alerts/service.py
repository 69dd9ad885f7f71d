"""Alert decisions and lifecycle. Every function runs inside the caller's transaction, so a
decision, its history entry, its outbox deliveries and its stream events commit together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, literal_column, or_, select, text, true, update
from sqlalchemy.dialects.postgresql import aggregate_order_by, array_agg
from sqlalchemy.ext.asyncio import AsyncConnection

from cxm_alerting.config import AlertingSettings
from cxm_alerting.errors import InvalidTransition, NotFound
from cxm_alerting.journey.service import journey_view
from cxm_alerting.models import alerts, deliveries, journey
from cxm_alerting.notify.alerts import Alert
from cxm_alerting.notify.escalation import decide_escalation, sla_deadline
from cxm_alerting.notify.inhibition import Inhibitor
from cxm_alerting.notify.muting import Muter, first_mute
from cxm_alerting.notify.silences import Silencer
from cxm_alerting.notify.timing import next_flush_at
from cxm_alerting.routing.alert_ids import alert_id as make_alert_id
from cxm_alerting.routing.alert_ids import window_start
from cxm_alerting.routing.groups import group_key
from cxm_alerting.routing.match import explain
from cxm_alerting.routing.matchers import ALERT_LABELS, matches_all
from cxm_alerting.routing.tree import Route, RoutingTree
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
class Handoff:
    """An outbox row already claimed in the decision's transaction, handed to this process's
    delivery worker in memory after commit with the alert view it renders. The row stays the
    source of truth: if the process dies, the claim's lease expires and the worker polling
    the outbox sends it (same webhook-id)."""

    row: dict[str, Any]
    view: dict[str, Any]


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
    handoff: tuple[Handoff, ...] = ()


# Hot-path statements built once: SQLAlchemy then reuses their compiled form and cache key
# instead of rebuilding and re-keying a statement per signal.
_EXISTING_ALERT = (
    select(alerts)
    .where(
        or_(
            alerts.c.alert_id == bindparam("aid"),
            and_(
                alerts.c.customer_id == bindparam("customer"),
                alerts.c.kind == bindparam("kind"),
                alerts.c.window_start == bindparam("start"),
            ),
        )
    )
    .order_by((alerts.c.alert_id == bindparam("aid")).desc())
    .limit(1)
    .with_for_update()
    .lateral("existing")
)
_RECENT = (
    select(journey)
    .where(journey.c.customer_id == bindparam("customer"))
    .order_by(journey.c.occurred_at.desc())
    .limit(bindparam("n"))
    .subquery("recent")
)


def _recent(column: Any, name: str) -> Any:
    return array_agg(aggregate_order_by(column, _RECENT.c.occurred_at.desc())).label(name)


_JOURNEY_COLUMNS = ("event_id", "occurred_at", "channel", "touchpoint", "type", "identifiers")
_JOURNEY_ARRAYS = select(
    *(_recent(_RECENT.c[name], f"journey_{name}") for name in _JOURNEY_COLUMNS)
).lateral("journey_arrays")
# What a decision reads, in one round trip: the alert already held for the signal's (kind,
# customer, window), row-locked, if any (its columns are NULL otherwise), and the customer's
# last touchpoints as arrays (NULL when none).
_DECISION_READ = select(_EXISTING_ALERT, _JOURNEY_ARRAYS).select_from(
    select(literal_column("1").label("one"))
    .subquery("one")
    .outerjoin(_EXISTING_ALERT, true())
    .join(_JOURNEY_ARRAYS, true())
)
_INSERT_ALERT = alerts.insert()
# The columns a new alert is written with (raise_from_signal sets exactly these).
_NEW_ALERT_COLUMNS = (
    "alert_id",
    "kind",
    "customer_id",
    "status",
    "severity",
    "team",
    "receivers",
    "labels",
    "group_key",
    "window_start",
    "assigned_at",
    "sla_deadline",
    "muted_by",
    "repeat_at",
    "payload",
    "history",
    "created_at",
    "updated_at",
)
# Outbox rows written already claimed (attempt 1, leased): one per (receiver, channel, config).
_CLAIMED_ROWS = (
    "INSERT INTO alerting.deliveries"
    " (alert_id, msg_id, receiver, channel, config_index, event, attempts, next_attempt_at)"
    " SELECT :d_alert_id, :d_msg_id, d.receiver, d.channel, d.config_index, :d_event, 1,"
    " now() + make_interval(secs => :d_lease)"
    " FROM unnest(CAST(:d_receivers AS text[]), CAST(:d_channels AS text[]),"
    " CAST(:d_indexes AS int[])) AS d(receiver, channel, config_index){guard}"
    " RETURNING id, created_at, receiver, channel, config_index"
)
_INSERT_CLAIMED = text(_CLAIMED_ROWS.format(guard=""))
_NEW_ALERT = (
    "WITH new_alert AS (INSERT INTO alerting.alerts ("
    + ", ".join(_NEW_ALERT_COLUMNS)
    + ") VALUES ("
    + ", ".join(f":{c}" for c in _NEW_ALERT_COLUMNS)
    + "){conflict}) "
)
_NEW_ALERT_PARAMS = [bindparam(c, type_=alerts.c[c].type) for c in _NEW_ALERT_COLUMNS]
# A new alert and its claimed rows in one statement (Postgres runs a data-modifying CTE
# whether or not the statement reads it): one round trip less on the way to the receiver.
_INSERT_ALERT_AND_CLAIMED = text(
    _NEW_ALERT.format(conflict="") + _CLAIMED_ROWS.format(guard="")
).bindparams(*_NEW_ALERT_PARAMS)
# The same outside a transaction (fast path): if the alert exists, nothing is written.
_INSERT_ALERT_IF_NEW_AND_CLAIMED = text(
    _NEW_ALERT.format(conflict=" ON CONFLICT (alert_id) DO NOTHING RETURNING alert_id")
    + _CLAIMED_ROWS.format(guard=" CROSS JOIN new_alert")
).bindparams(*_NEW_ALERT_PARAMS)


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


def _content(
    *,
    signal: Signal,
    settings: AlertingSettings,
    previous: dict[str, Any] | None,
    touchpoints: list[dict[str, Any]],
    identifiers: dict[str, str],
) -> dict[str, Any]:
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
    claim_lease: float | None = None,
    routes: Mapping[str, Route] | None = None,
    stream: bool = True,
    new_alert: dict[str, Any] | None = None,
    only_if_new: bool = False,
) -> tuple[int, list[str], tuple[Handoff, ...]]:
    """Outbox rows for every channel of ``receivers`` and (with ``stream``) an event on each
    SSE team stream.

    Receivers whose route (in ``routes``) sets a group_wait get rows held back for their
    aggregation group's flush instead. With ``claim_lease`` the other rows are written already
    claimed (attempt 1, leased) and returned
    as hand-offs, so the worker can send them right after commit without a claim round trip.
    ``new_alert`` (the values of an alert not inserted yet) is inserted by the same statement
    as those claimed rows when there are any: one round trip less on the way to the receiver.
    With ``only_if_new`` that statement writes nothing if the alert exists, and
    :class:`_AlertExists` is raised.
    """
    rows: list[dict[str, Any]] = []
    grouped: list[dict[str, Any]] = []
    streamed: list[str] = []
    for name in receivers:
        receiver = tree.receivers.get(name)
        if receiver is None:
            continue
        route = (routes or {}).get(name)
        target = grouped if route is not None and route.groups_notifications else rows
        for index, hook in enumerate(receiver.webhook_configs):
            if not resolved_only or hook.send_resolved:
                target.append(dict(channel="webhook", config_index=index, receiver=name))
        for index, mail in enumerate(receiver.email_configs):
            if not resolved_only or mail.send_resolved:
                target.append(dict(channel="email", config_index=index, receiver=name))
    if new_alert is not None and not (rows and claim_lease is not None):
        await conn.execute(_INSERT_ALERT, new_alert)
        new_alert = None
    for name in receivers:
        receiver = tree.receivers.get(name)
        if receiver is not None and receiver.sse and stream:
            await append_event(conn=conn, team=name, event=event, alert_id=alert, data=view)
            streamed.append(name)
    for row in grouped:
        # Held back until the group's flush; the worker sends one notification per group.
        route = (routes or {})[row["receiver"]]
        key = group_key(route=route, labels=view["labels"])
        flush_at = await _group_flush_at(conn=conn, key=key, receiver=row["receiver"], route=route)
        row.update(group_key=key, next_attempt_at=flush_at)
    if grouped:
        await conn.execute(
            deliveries.insert(),
            [dict(r, alert_id=alert, msg_id=msg_id, event=event) for r in grouped],
        )
    if not rows:
        return len(grouped), streamed, ()
    rows = [dict(r, alert_id=alert, msg_id=msg_id, event=event) for r in rows]
    if claim_lease is None:
        await conn.execute(deliveries.insert(), rows)
        return len(rows) + len(grouped), streamed, ()
    params = {
        "d_alert_id": alert,
        "d_msg_id": msg_id,
        "d_event": event,
        "d_lease": float(claim_lease),
        "d_receivers": [r["receiver"] for r in rows],
        "d_channels": [r["channel"] for r in rows],
        "d_indexes": [r["config_index"] for r in rows],
    }
    statement = _INSERT_CLAIMED
    if new_alert is not None:
        statement = _INSERT_ALERT_IF_NEW_AND_CLAIMED if only_if_new else _INSERT_ALERT_AND_CLAIMED
        params.update({c: new_alert[c] for c in _NEW_ALERT_COLUMNS})
    result = await conn.execute(statement, params)
    claimed = {(c.receiver, c.channel, c.config_index): c for c in result}
    if only_if_new and not claimed:
        raise _AlertExists(alert)
    handoff = tuple(
        Handoff(row=dict(r, id=c.id, created_at=c.created_at, attempts=1), view=view)
        for r in rows
        for c in [claimed[(r["receiver"], r["channel"], r["config_index"])]]
    )
    return len(rows) + len(grouped), streamed, handoff


_GROUP_STATE = text(
    "SELECT min(next_attempt_at) FILTER (WHERE status = 'pending' AND attempts = 0) AS waiting,"
    # The last flush: a sent notification, or one claimed and in flight right now.
    " greatest(max(delivered_at) FILTER (WHERE status = 'sent'),"
    " max(now()) FILTER (WHERE status = 'pending' AND group_msg_id IS NOT NULL)) AS last_sent,"
    " now() AS now"
    " FROM alerting.deliveries WHERE group_key = :key AND receiver = :receiver"
)


async def _group_flush_at(
    *, conn: AsyncConnection, key: str, receiver: str, route: Route
) -> datetime:
    """When a new member of the group is sent: with the group's waiting flush if one is
    pending; otherwise ``group_wait`` from now for a new group, or ``group_interval`` after
    the group's last notification (database time, as the outbox poll uses)."""
    state = (await conn.execute(_GROUP_STATE, {"key": key, "receiver": receiver})).one()
    if state.waiting is not None:
        return state.waiting
    due = next_flush_at(
        created_at=state.now,
        last_flushed_at=state.last_sent,
        group_wait=route.group_wait,
        group_interval=route.group_interval,
    )
    return max(state.now, due)


def _history(row_history: list[Any] | None, entry: dict[str, Any]) -> list[Any]:
    return [*(row_history or []), entry][-50:]


def _pushes(tree: RoutingTree, name: str) -> bool:
    """Whether ``name`` gets notifications that a reminder can repeat (webhook or email)."""
    receiver = tree.receivers.get(name)
    return receiver is not None and bool(receiver.webhook_configs or receiver.email_configs)


def _first_repeat_at(
    *, tree: RoutingTree, routes: Mapping[str, Route], receivers: Sequence[str], now: datetime
) -> datetime | None:
    """When the repeat pass should first look at an alert just notified to ``receivers``:
    the shortest repeat_interval among its push receivers (None: nothing to remind)."""
    intervals = [
        routes[name].repeat_interval for name in receivers if name in routes and _pushes(tree, name)
    ]
    return now + min(intervals) if intervals else None


async def raise_from_signal(
    *,
    conn: AsyncConnection,
    signal: Signal,
    tree: RoutingTree,
    settings: AlertingSettings,
    now: datetime,
    silence_cache: silences_service.SilenceCache | None = None,
) -> Decision:
    """Turn one signal into an alert decision: route, mute, upsert, enqueue notifications.
    Runs inside the caller's transaction."""
    decision = await _decide(
        conn=conn,
        signal=signal,
        tree=tree,
        settings=settings,
        now=now,
        silence_cache=silence_cache,
        fast=False,
    )
    assert decision is not None  # only the fast path declines
    return decision


async def raise_from_signal_fast(
    *,
    conn: AsyncConnection,
    signal: Signal,
    tree: RoutingTree,
    settings: AlertingSettings,
    now: datetime,
    silence_cache: silences_service.SilenceCache | None = None,
) -> Decision | None:
    """The common case in two round trips on an autocommit connection, or None when the
    signal needs :func:`raise_from_signal` in a transaction.

    The common case is a new, unmuted alert whose receivers are notified only by webhook or
    email right away (no SSE stream, no group_wait): one read, then one statement that writes
    the alert and its claimed outbox rows together, so they still commit atomically. An alert
    inserted meanwhile by another process (same id) makes it decline, as does an existing
    alert (which needs its row lock); a duplicate signal is answered from the read.
    """
    return await _decide(
        conn=conn,
        signal=signal,
        tree=tree,
        settings=settings,
        now=now,
        silence_cache=silence_cache,
        fast=True,
    )


class _AlertExists(Exception):
    """The fast path's alert insert found the alert already there."""


def _notified_at_once(
    *, tree: RoutingTree, receivers: Sequence[str], routes: Mapping[str, Route]
) -> bool:
    """Receivers notified only through outbox rows sent right away (webhook, email)."""
    for name in receivers:
        receiver = tree.receivers.get(name)
        if receiver is None or receiver.sse:
            return False
        route = routes.get(name)
        if route is not None and route.groups_notifications:
            return False
    return any(_pushes(tree, name) for name in receivers)


async def _decide(
    *,
    conn: AsyncConnection,
    signal: Signal,
    tree: RoutingTree,
    settings: AlertingSettings,
    now: datetime,
    silence_cache: silences_service.SilenceCache | None,
    fast: bool,
) -> Decision | None:
    window = timedelta(seconds=settings.alert_window_seconds)
    start = window_start(at=signal.occurred_at, window=window)
    aid = make_alert_id(kind=signal.kind, customer_id=signal.customer_id, window_start=start)
    # The same (kind, customer, window) may already be held under another id: an alert
    # re-keyed from a customer merged into this one keeps its id (and webhook-id).
    read = (
        await conn.execute(
            _DECISION_READ,
            {
                "aid": aid,
                "customer": signal.customer_id,
                "kind": signal.kind,
                "start": start,
                "n": settings.journey_size,
            },
        )
    ).one()
    existing = read if read.alert_id is not None else None
    if existing is not None:
        aid = existing.alert_id
    if existing is not None and any(
        e.get("signal_id") == signal.signal_id for e in existing.payload.get("evidence") or []
    ):
        return Decision(aid, "duplicate", signal.kind, existing.team)
    if fast and existing is not None:
        return None

    labels = alert_labels(signal)
    explanation = explain(tree, labels)
    receivers = explanation.receivers
    team = receivers[0]
    route = explanation.matches[0].route
    routes: dict[str, Route] = {}
    for match in explanation.matches:
        routes.setdefault(match.receiver, match.route)
    if fast and not _notified_at_once(tree=tree, receivers=receivers, routes=routes):
        return None
    active = (
        await silence_cache.active(conn=conn, now=now)
        if silence_cache is not None
        else await silences_service.active(conn=conn, now=now)
    )
    # Other alerts of the customer matter only when an inhibit rule could mute this one.
    inhibitable = any(matches_all(r.target_matchers, labels) for r in tree.inhibit_rules)
    sources = (
        await _firing_alerts_of(conn=conn, customer_id=signal.customer_id, exclude=aid)
        if inhibitable
        else []
    )
    muters: list[Muter] = [
        Silencer.build(silences=active),
        Inhibitor.build(rules=tree.inhibit_rules, alerts=sources),
    ]
    mute = first_mute(labels=labels, muters=muters, now=now)
    touchpoints, identifiers = journey_view(
        zip(*(getattr(read, f"journey_{name}") or () for name in _JOURNEY_COLUMNS), strict=True)
    )
    content = _content(
        signal=signal,
        settings=settings,
        previous=existing.payload if existing is not None else None,
        touchpoints=touchpoints,
        identifiers=identifiers,
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
            repeat_at=None
            if mute
            else _first_repeat_at(tree=tree, routes=routes, receivers=receivers, now=now),
            payload={**content, "opened_at": now.isoformat()},
            history=[record],
            created_at=now,
            updated_at=now,
        )
        if mute:
            if fast:
                return None
            await conn.execute(_INSERT_ALERT, values)
            return Decision(aid, "suppressed", signal.kind, team, tuple(receivers), mute.kind.value)
        view = alert_view(values)
        try:
            outbox, streamed, handoff = await _enqueue(
                conn=conn,
                tree=tree,
                alert=aid,
                receivers=receivers,
                event="firing",
                msg_id=aid,
                view=view,
                claim_lease=settings.delivery_lease_seconds,
                routes=routes,
                new_alert=values,
                only_if_new=fast,
            )
        except _AlertExists:
            return None
        return Decision(
            aid,
            "opened",
            signal.kind,
            team,
            tuple(receivers),
            None,
            outbox,
            tuple(streamed),
            handoff,
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
        repeat_at=_first_repeat_at(tree=tree, routes=routes, receivers=receivers, now=now),
        reopen_count=count,
        payload={**existing.payload, **content, "opened_at": now.isoformat()},
        history=_history(existing.history, record),
        updated_at=now,
    )
    await conn.execute(update(alerts).where(alerts.c.alert_id == aid).values(**values))
    event = "firing" if first_time else "reopened"
    msg_id = aid if first_time else f"{aid}.reopened{count}"
    view = alert_view({**dict(existing._mapping), **values})
    outbox, streamed, handoff = await _enqueue(
        conn=conn,
        tree=tree,
        alert=aid,
        receivers=receivers,
        event=event,
        msg_id=msg_id,
        view=view,
        claim_lease=settings.delivery_lease_seconds,
        routes=routes,
    )
    action = "opened" if first_time else "reopened"
    return Decision(
        aid, action, signal.kind, team, tuple(receivers), None, outbox, tuple(streamed), handoff
    )


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
        raise NotFound("alert not found")
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
            # The repeat pass works out the new receiver's reminders (see repeat_due).
            repeat_at=row.repeat_at if row.repeat_at is not None or not decision.escalate else now,
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


# When an alert, or an aggregation group, was last notified to a receiver: the latest of its
# outbox rows (sent, in flight, or given up on: a reminder goes out either way).
_ALERT_NOTIFIED = text(
    "SELECT receiver, max(coalesce(delivered_at, created_at)) AS at FROM alerting.deliveries"
    " WHERE alert_id = :aid GROUP BY receiver"
)
_GROUP_NOTIFIED = text(
    "SELECT max(coalesce(delivered_at, created_at)) FROM alerting.deliveries"
    " WHERE group_key = :key AND receiver = :receiver"
)


@dataclass(frozen=True, slots=True)
class Repeat:
    alert_id: str
    receivers: tuple[str, ...]
    outbox: int


async def repeat_due(
    *, conn: AsyncConnection, tree: RoutingTree, now: datetime, limit: int = 100
) -> list[Repeat]:
    """Remind receivers of alerts still open (not acknowledged) ``repeat_interval`` after
    their last notification, as Alertmanager re-sends a group whose firing set did not change.

    The clock is per receiver and per notification unit: the alert itself, or on a route that
    groups notifications (group_wait) the alert's aggregation group, so any notification of the
    group (a new member) restarts it, and members due together go out as one grouped message.
    A reminder is an outbox row with event ``repeated`` and webhook-id
    ``<alert id>.repeated<N>`` (N counts the alert's reminders); SSE streams get none, the
    console already lists the alert. Acknowledged alerts are not repeated: someone owns them,
    and the ack SLA/escalation covers the unacknowledged ones.
    """
    rows = (
        await conn.execute(
            select(alerts)
            .where(alerts.c.status == OPEN, alerts.c.repeat_at <= now)
            .order_by(alerts.c.repeat_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    done: list[Repeat] = []
    # Groups reminded in this pass: their other members due now join the same flush.
    reminded: set[tuple[str, str]] = set()
    group_seen: dict[tuple[str, str], datetime | None] = {}
    for row in rows:
        explanation = explain(tree, row.labels)
        routes: dict[str, Route] = {}
        for match in explanation.matches:
            routes.setdefault(match.receiver, match.route)
        # A receiver reached through escalation is reminded on the alert's own route timing.
        fallback = explanation.matches[0].route
        notified = {
            r.receiver: r.at for r in await conn.execute(_ALERT_NOTIFIED, {"aid": row.alert_id})
        }
        due: list[str] = []
        upcoming: list[datetime] = []
        for name in dict.fromkeys(row.receivers):
            if not _pushes(tree, name):
                continue
            route = routes.get(name, fallback)
            last = notified.get(name)
            unit: tuple[str, str] | None = None
            if name in routes and route.groups_notifications:
                unit = (group_key(route=route, labels=row.labels), name)
                if unit in reminded:
                    due.append(name)
                    upcoming.append(now + route.repeat_interval)
                    continue
                if unit not in group_seen:
                    group_seen[unit] = (
                        await conn.execute(_GROUP_NOTIFIED, {"key": unit[0], "receiver": name})
                    ).scalar()
                last = group_seen[unit] or last
            at = (last or row.assigned_at or row.created_at) + route.repeat_interval
            if at <= now:
                due.append(name)
                upcoming.append(now + route.repeat_interval)
                if unit is not None:
                    reminded.add(unit)
            else:
                upcoming.append(at)
        values: dict[str, Any] = dict(repeat_at=min(upcoming) if upcoming else None)
        if due:
            count = row.repeat_count + 1
            values.update(
                repeat_count=count,
                history=_history(
                    row.history,
                    {"at": now.isoformat(), "action": "repeated", "receivers": due, "n": count},
                ),
                updated_at=now,
            )
            view = alert_view({**dict(row._mapping), **values})
            outbox, _, _ = await _enqueue(
                conn=conn,
                tree=tree,
                alert=row.alert_id,
                receivers=due,
                event="repeated",
                msg_id=f"{row.alert_id}.repeated{count}",
                view=view,
                routes=routes,
                stream=False,
            )
            done.append(Repeat(row.alert_id, tuple(due), outbox))
        await conn.execute(update(alerts).where(alerts.c.alert_id == row.alert_id).values(**values))
    return done


async def open_counts(*, conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(
        select(alerts.c.team, func.count()).where(alerts.c.status == OPEN).group_by(alerts.c.team)
    )
    return {team: int(count) for team, count in rows}
