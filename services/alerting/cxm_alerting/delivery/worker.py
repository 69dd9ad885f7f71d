"""The delivery worker: drains the outbox. Each delivery runs in its own task under its
receiver's semaphore, so a slow or failing receiver never delays the others.

Deliveries decided by this process arrive in memory right after their transaction committed
(:meth:`DeliveryWorker.submit`, already claimed, with the rendered alert view); the outbox
poll picks up everything else (API transitions, escalations, retries, claims of a process that
died). Successful attempts are recorded in batches, off the path to the receiver.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cxm_alerting import metrics
from cxm_alerting.alerts.service import Handoff, alert_view
from cxm_alerting.config import AlertingSettings
from cxm_alerting.delivery.channels import (
    group_email_message,
    send_email,
    send_webhook,
    send_webhook_group,
)
from cxm_alerting.models import alerts, deliveries
from cxm_alerting.notify.retry import DeliveryOutcome, RetryPolicy, decide_retry
from cxm_alerting.routing.tree import RoutingTree
from cxm_alerting.stream.service import Wakeup, wait_for

log = logging.getLogger(__name__)

# Claim = push next_attempt_at past the attempt's worst case, so a crashed worker's claim
# expires and another process (or this one after restart) retries with the same webhook-id.
_CLAIM = text(
    "UPDATE alerting.deliveries SET next_attempt_at = now() + make_interval(secs => :lease),"
    " attempts = attempts + 1"
    " WHERE id IN (SELECT id FROM alerting.deliveries WHERE status = 'pending'"
    " AND next_attempt_at <= now() AND NOT (id = ANY(:busy))"
    " ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " RETURNING id, alert_id, msg_id, receiver, channel, config_index, event, attempts,"
    " created_at, group_key, group_msg_id"
)
_SET_GROUP_MSG_ID = text(
    "UPDATE alerting.deliveries SET group_msg_id = :msg WHERE id = ANY(CAST(:ids AS bigint[]))"
)
# Off the path to the receiver: a longer coalescing window means fewer statements per
# delivery; an unrecorded success is only re-sent (same webhook-id) if the process dies.
_RECORD_COALESCE_SECONDS = 0.2
_MARK_SENT = text(
    "UPDATE alerting.deliveries AS d SET status = 'sent', delivered_at = v.at, last_error = NULL"
    " FROM unnest(CAST(:ids AS bigint[]), CAST(:ats AS timestamptz[])) AS v(id, at)"
    " WHERE d.id = v.id"
)


def group_message_id(members: list[dict[str, Any]]) -> str:
    if len(members) == 1:
        return str(members[0]["msg_id"])
    ids = ",".join(str(i) for i in sorted(m["id"] for m in members))
    return "grp_" + hashlib.sha256(ids.encode()).hexdigest()[:32]


class DeliveryWorker:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: AlertingSettings,
        tree: RoutingTree,
        wakeup: Wakeup,
        rand: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self.tree = tree
        self._wake = wakeup.subscribe()
        self._rand = rand or random.Random()
        self._policy = RetryPolicy(
            base_delay=timedelta(seconds=settings.retry_base_seconds),
            max_delay=timedelta(seconds=settings.retry_max_seconds),
            max_attempts=settings.retry_max_attempts,
        )
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._busy: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
        )
        # Successful attempts waiting to be marked sent: (delivery id, delivered at).
        self._sent: list[tuple[int, datetime]] = []
        self._sent_ready = asyncio.Event()
        self._record_conn: AsyncConnection | None = None

    def submit(self, handoffs: tuple[Handoff, ...]) -> None:
        """Start deliveries claimed in a just-committed decision (see :class:`Handoff`)."""
        for handoff in handoffs:
            self._start([handoff.row], handoff.view)

    def _start(self, rows: list[dict[str, Any]], view: dict[str, Any] | None) -> None:
        """Start one notification: a single delivery row, or every row of a group flush."""
        self._busy.update(row["id"] for row in rows)
        task = asyncio.create_task(self._deliver(rows, view))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        recorder = asyncio.create_task(self._record_sent_loop(), name="delivery-recorder")
        try:
            while True:
                claimed = await self._claim()
                for job in claimed:
                    self._start(job, None)
                if not claimed:
                    await wait_for(self._wake, self._settings.delivery_poll_seconds)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
            # Possibly cancelled mid-statement: the last records go over a fresh connection.
            await self._close_record_conn(broken=True)
            await asyncio.shield(self._flush_sent())
            await self._close_record_conn()
            await self._client.aclose()

    async def _record_sent_loop(self) -> None:
        while True:
            await self._sent_ready.wait()
            # Coalesce: one transaction marks every delivery that succeeded meanwhile.
            await asyncio.sleep(_RECORD_COALESCE_SECONDS)
            self._sent_ready.clear()
            try:
                await self._flush_sent()
            except Exception:
                # Unrecorded sends are re-sent after their lease (same webhook-id).
                log.exception("recording sent deliveries failed")
                await asyncio.sleep(1.0)

    async def _flush_sent(self) -> None:
        batch, self._sent = self._sent, []
        if not batch:
            return
        try:
            conn = await self._recorder()
            try:
                await conn.execute(
                    _MARK_SENT,
                    {"ids": [i for i, _ in batch], "ats": [at for _, at in batch]},
                )
            except Exception:
                await self._close_record_conn(broken=True)
                raise
        finally:
            for delivery_id, _ in batch:
                self._busy.discard(delivery_id)

    async def _recorder(self) -> AsyncConnection:
        """The recorder's own connection: autocommit, one round trip per batch, and commits
        that do not wait for the WAL flush. A record lost to a PostgreSQL crash only means the
        delivery is sent again after its lease, with the same webhook-id."""
        if self._record_conn is None:
            conn = await self._engine.connect()
            try:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("SET synchronous_commit TO off")
            except Exception:
                await conn.invalidate()
                await conn.close()
                raise
            self._record_conn = conn
        return self._record_conn

    async def _close_record_conn(self, *, broken: bool = False) -> None:
        conn, self._record_conn = self._record_conn, None
        if conn is None:
            return
        try:
            if broken:
                await conn.invalidate()
            else:
                await conn.exec_driver_sql("RESET synchronous_commit")
        except Exception:
            log.warning("closing the delivery recorder's connection failed")
        finally:
            await conn.close()

    async def _claim(self) -> list[list[dict[str, Any]]]:
        """Claim due deliveries; rows of one aggregation group due together become one
        notification, whose webhook-id is fixed in the claiming transaction (retries reuse
        it): the member's own msg_id when it is alone (= its alert id), else
        ``grp_`` + the first 32 hex digits of SHA-256 over the sorted member row ids."""
        async with self._engine.begin() as conn:
            rows = await conn.execute(
                _CLAIM,
                {
                    "lease": self._settings.delivery_lease_seconds,
                    "busy": list(self._busy) or [0],
                    "limit": 200,
                },
            )
            jobs: list[list[dict[str, Any]]] = []
            groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
            for row in (dict(r._mapping) for r in rows):
                if row["group_key"] is None:
                    jobs.append([row])
                    continue
                bucket = (
                    row["group_key"],
                    row["receiver"],
                    row["channel"],
                    row["config_index"],
                    row["group_msg_id"],
                )
                groups.setdefault(bucket, []).append(row)
            for members in groups.values():
                if members[0]["group_msg_id"] is None:
                    msg = group_message_id(members)
                    await conn.execute(
                        _SET_GROUP_MSG_ID, {"msg": msg, "ids": [m["id"] for m in members]}
                    )
                    for member in members:
                        member["group_msg_id"] = msg
                jobs.append(sorted(members, key=lambda m: m["id"]))
            return jobs

    def _limit(self, receiver: str) -> asyncio.Semaphore:
        if receiver not in self._limits:
            self._limits[receiver] = asyncio.Semaphore(
                self._settings.delivery_concurrency_per_receiver
            )
        return self._limits[receiver]

    async def _deliver(self, rows: list[dict[str, Any]], view: dict[str, Any] | None) -> None:
        recorded_later = False
        try:
            async with self._limit(rows[0]["receiver"]):
                outcome = await self._attempt(rows, view)
                recorded_later = await self._record(rows, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The claim's lease expires and the delivery is retried; never lost.
            log.exception("delivery attempt failed delivery_id=%s", rows[0]["id"])
        finally:
            if not recorded_later:
                self._busy.difference_update(row["id"] for row in rows)

    async def _views(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        ids = list({row["alert_id"] for row in rows})
        async with self._engine.connect() as conn:
            found = await conn.execute(select(alerts).where(alerts.c.alert_id.in_(ids)))
            return {r.alert_id: alert_view(r) for r in found}

    async def _attempt(
        self, rows: list[dict[str, Any]], view: dict[str, Any] | None
    ) -> DeliveryOutcome | None:
        first = rows[0]
        receiver = self.tree.receivers.get(first["receiver"])
        if receiver is None:
            return None
        if view is None:
            views = await self._views(rows)
            members = [(views[r["alert_id"]], r["event"]) for r in rows if r["alert_id"] in views]
        else:
            members = [(view, first["event"])]
        if not members:
            return None
        msg_id = first["msg_id"] if len(rows) == 1 else first["group_msg_id"]
        timeout = self._settings.delivery_timeout_seconds
        now = datetime.now(UTC)
        if first["channel"] == "webhook":
            configs = receiver.webhook_configs
            if first["config_index"] >= len(configs):
                return None
            config = configs[first["config_index"]]
            secret = self._settings.webhook_secret(config.secret_ref)
            if len(rows) > 1:
                return await send_webhook_group(
                    client=self._client,
                    config=config,
                    secret=secret,
                    msg_id=msg_id,
                    group_key=first["group_key"],
                    events=[e for _, e in members],
                    views=[v for v, _ in members],
                    now=now,
                    timeout=timeout,
                )
            return await send_webhook(
                client=self._client,
                config=config,
                secret=secret,
                msg_id=msg_id,
                event=members[0][1],
                view=members[0][0],
                now=now,
                timeout=timeout,
            )
        mails = receiver.email_configs
        if first["config_index"] >= len(mails):
            return None
        mail = mails[first["config_index"]]
        message = None
        if len(rows) > 1:
            message = group_email_message(
                config=mail,
                sender=self._settings.smtp_from,
                msg_id=msg_id,
                events=[e for _, e in members],
                views=[v for v, _ in members],
            )
        return await send_email(
            settings=self._settings,
            config=mail,
            msg_id=msg_id,
            event=members[0][1],
            view=members[0][0],
            timeout=timeout,
            message=message,
        )

    async def _record(self, rows: list[dict[str, Any]], outcome: DeliveryOutcome | None) -> bool:
        """Store the attempt's outcome for every row it carried; True when it was queued for
        the batched recorder."""
        now = datetime.now(UTC)
        row = rows[0]
        ids = [r["id"] for r in rows]
        channel = row["channel"]
        values: dict[str, Any]
        if outcome is None:
            values = dict(status="failed", last_error="alert or receiver configuration gone")
            metrics.DELIVERY_FAILURES.labels(channel, "false").inc()
        else:
            decision = decide_retry(
                outcome=outcome,
                attempt=row["attempts"],
                policy=self._policy,
                now=now,
                rand=self._rand.random,
            )
            if outcome.succeeded:
                for member in rows:
                    latency = (now - member["created_at"]).total_seconds()
                    metrics.DELIVERY_LATENCY.labels(channel).observe(max(latency, 0.0))
                    self._sent.append((member["id"], now))
                self._sent_ready.set()
                return True
            if decision.retry and decision.delay is not None:
                values = dict(next_attempt_at=now + decision.delay, last_error=decision.reason)
                metrics.DELIVERY_FAILURES.labels(channel, "true").inc()
                metrics.DELIVERY_RETRIES.labels(channel).inc()
            else:
                values = dict(status="failed", last_error=decision.reason)
                metrics.DELIVERY_FAILURES.labels(channel, str(outcome.retryable).lower()).inc()
                metrics.DELIVERIES_GIVEN_UP.labels(channel).inc()
                log.warning(
                    "delivery abandoned delivery_id=%s receiver=%s channel=%s reason=%s",
                    row["id"],
                    row["receiver"],
                    channel,
                    decision.reason,
                )
        async with self._engine.begin() as conn:
            await conn.execute(update(deliveries).where(deliveries.c.id.in_(ids)).values(**values))
        if "next_attempt_at" in values:
            self._schedule_wake(values["next_attempt_at"] - now)
        return False

    def _schedule_wake(self, delay: timedelta) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(max(delay.total_seconds(), 0.0), self._wake.set)
