"""The delivery worker: drains the outbox. Each delivery runs in its own task under its
receiver's semaphore, so a slow or failing receiver never delays the others."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cxm_alerting import metrics
from cxm_alerting.alerts.service import alert_view
from cxm_alerting.config import AlertingSettings
from cxm_alerting.delivery.channels import send_email, send_webhook
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
    " created_at"
)


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

    def _lease_seconds(self) -> float:
        return self._settings.delivery_timeout_seconds + 5.0

    async def run(self) -> None:
        try:
            while True:
                claimed = await self._claim()
                for row in claimed:
                    self._busy.add(row["id"])
                    task = asyncio.create_task(self._deliver(row))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if not claimed:
                    await wait_for(self._wake, self._settings.delivery_poll_seconds)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._client.aclose()

    async def _claim(self) -> list[dict[str, Any]]:
        # Never claim more than each receiver can start now: queued work waits in the table,
        # where its lease cannot run out while it waits for a slot.
        async with self._engine.begin() as conn:
            rows = await conn.execute(
                _CLAIM,
                {"lease": self._lease_seconds(), "busy": list(self._busy) or [0], "limit": 200},
            )
            return [dict(r._mapping) for r in rows]

    def _limit(self, receiver: str) -> asyncio.Semaphore:
        if receiver not in self._limits:
            self._limits[receiver] = asyncio.Semaphore(
                self._settings.delivery_concurrency_per_receiver
            )
        return self._limits[receiver]

    async def _deliver(self, row: dict[str, Any]) -> None:
        try:
            async with self._limit(row["receiver"]):
                outcome = await self._attempt(row)
                await self._record(row, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The claim's lease expires and the delivery is retried; never lost.
            log.exception("delivery attempt failed delivery_id=%s", row["id"])
        finally:
            self._busy.discard(row["id"])

    async def _attempt(self, row: dict[str, Any]) -> DeliveryOutcome | None:
        receiver = self.tree.receivers.get(row["receiver"])
        async with self._engine.connect() as conn:
            alert = (
                await conn.execute(select(alerts).where(alerts.c.alert_id == row["alert_id"]))
            ).first()
        if alert is None or receiver is None:
            return None
        view = alert_view(alert)
        timeout = self._settings.delivery_timeout_seconds
        now = datetime.now(UTC)
        if row["channel"] == "webhook":
            configs = receiver.webhook_configs
            if row["config_index"] >= len(configs):
                return None
            config = configs[row["config_index"]]
            return await send_webhook(
                client=self._client,
                config=config,
                secret=self._settings.webhook_secret(config.secret_ref),
                msg_id=row["msg_id"],
                event=row["event"],
                view=view,
                now=now,
                timeout=timeout,
            )
        mails = receiver.email_configs
        if row["config_index"] >= len(mails):
            return None
        return await send_email(
            settings=self._settings,
            config=mails[row["config_index"]],
            msg_id=row["msg_id"],
            event=row["event"],
            view=view,
            timeout=timeout,
        )

    async def _record(self, row: dict[str, Any], outcome: DeliveryOutcome | None) -> None:
        now = datetime.now(UTC)
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
                values = dict(status="sent", delivered_at=now, last_error=None)
                latency = (now - row["created_at"]).total_seconds()
                metrics.DELIVERY_LATENCY.labels(channel).observe(max(latency, 0.0))
            elif decision.retry and decision.delay is not None:
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
            await conn.execute(
                update(deliveries).where(deliveries.c.id == row["id"]).values(**values)
            )
        if "next_attempt_at" in values:
            self._schedule_wake(values["next_attempt_at"] - now)

    def _schedule_wake(self, delay: timedelta) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(max(delay.total_seconds(), 0.0), self._wake.set)
