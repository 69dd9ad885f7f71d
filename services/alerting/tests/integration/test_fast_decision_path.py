"""The two-round-trip decision path (autocommit) on the real PostgreSQL: a new alert and its
claimed outbox row are written together, and everything it cannot decide safely on its own
(an existing alert, SSE or grouped receivers, an alert another process inserts meanwhile) is
declined so that the transactional path decides it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from cxm_alerting.alerts.service import raise_from_signal, raise_from_signal_fast
from cxm_alerting.api import MIGRATIONS
from cxm_alerting.config import AlertingSettings
from cxm_alerting.models import SCHEMA, alerts, deliveries
from cxm_alerting.routing.alert_ids import alert_id, window_start
from cxm_alerting.routing.tree import load_tree
from cxm_shared.db import migrate
from cxm_shared.events import Signal

pytestmark = pytest.mark.integration

WEBHOOK_ONLY = """
route:
  receiver: support
  group_wait: 0s
receivers:
  - name: support
    webhook_configs:
      - url: http://127.0.0.1:9/hook
"""


def _signal(kind: str, customer: str, signal_id: str) -> Signal:
    return Signal(
        signal_id=signal_id,
        kind=kind,  # type: ignore[arg-type]
        customer_id=customer,
        occurred_at=datetime.now(UTC),
        evidence={"event_ids": [f"ev-{signal_id}"]},
    )


def _aid(signal: Signal) -> str:
    start = window_start(at=signal.occurred_at, window=timedelta(days=1))
    return alert_id(kind=signal.kind, customer_id=signal.customer_id, window_start=start)


async def test_fast_path_writes_new_alerts_and_declines_what_needs_a_transaction(
    db_engine, database_url
):
    await asyncio.to_thread(migrate, script_location=MIGRATIONS, url=database_url, schema=SCHEMA)
    settings = AlertingSettings(database_url=database_url)
    tree = load_tree(WEBHOOK_ONLY)

    async def fast(conn, signal, routing=tree):
        return await raise_from_signal_fast(
            conn=conn, signal=signal, tree=routing, settings=settings, now=datetime.now(UTC)
        )

    async def outbox(aid: str) -> list:
        async with db_engine.connect() as conn:
            query = select(deliveries).where(deliveries.c.alert_id == aid)
            return (await conn.execute(query)).all()

    async with db_engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        first = _signal("detractor", "cus_f1", "s1")
        opened = await fast(conn, first)
        assert opened is not None and opened.action == "opened"
        # Alert and outbox row are there together; the row is claimed for this process.
        [row] = await outbox(_aid(first))
        assert (row.msg_id, row.attempts, row.status) == (_aid(first), 1, "pending")
        assert [h.row["id"] for h in opened.handoff] == [row.id]

        again = await fast(conn, first)
        assert again is not None and again.action == "duplicate"
        # More evidence for the open alert needs its row lock: declined ...
        follow_up = _signal("detractor", "cus_f1", "s2")
        assert await fast(conn, follow_up) is None
        # ... and decided by the transactional path.
        async with db_engine.begin() as txn:
            updated = await raise_from_signal(
                conn=txn, signal=follow_up, tree=tree, settings=settings, now=datetime.now(UTC)
            )
        assert updated.action == "updated"
        assert len(await outbox(_aid(first))) == 1

        # An SSE stream event must commit with the alert: declined.
        with_sse = load_tree(
            WEBHOOK_ONLY.replace("- name: support", "- name: support\n    sse: true")
        )
        assert await fast(conn, _signal("detractor", "cus_f2", "s3"), with_sse) is None

        # Another process inserts the same alert while the fast path writes: its insert waits
        # for that transaction, then writes nothing, and the signal is declined.
        raced = _signal("low_csat", "cus_f3", "s4")
        async with db_engine.connect() as other:
            await other.begin()
            await other.execute(
                alerts.insert().values(
                    alert_id=_aid(raced),
                    kind=raced.kind,
                    customer_id=raced.customer_id,
                    payload={},
                    window_start=window_start(at=raced.occurred_at, window=timedelta(days=1)),
                )
            )
            pending = asyncio.create_task(fast(conn, raced))
            await asyncio.sleep(0.5)
            assert not pending.done()  # blocked on the other transaction's row
            await other.commit()
            assert await asyncio.wait_for(pending, 10) is None
        assert await outbox(_aid(raced)) == []
        async with db_engine.connect() as check:
            count = select(func.count()).select_from(alerts)
            assert (await check.execute(count)).scalar_one() == 2
