"""Escalation along receivers' escalate_to chains when ack SLAs are breached."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cxm_alerting.notify.escalation import decide_escalation, sla_breached
from cxm_alerting.routing.tree import Receiver, build_tree

T0 = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def receivers() -> dict[str, Receiver]:
    tree = build_tree(
        {
            "route": {"receiver": "store-ops"},
            "receivers": [
                {"name": "store-ops", "ack_sla": "15m", "escalate_to": "store-lead"},
                {"name": "store-lead", "ack_sla": "30m", "escalate_to": "cx-director"},
                {"name": "cx-director"},
                {"name": "no-sla"},
            ],
        }
    )
    return dict(tree.receivers)


def test_within_sla_stays_put_and_reports_the_deadline(receivers: dict[str, Receiver]) -> None:
    decision = decide_escalation(
        receiver="store-ops",
        assigned_at=T0,
        acked_at=None,
        receivers=receivers,
        now=T0 + timedelta(minutes=15),
    )

    assert decision.receiver == "store-ops" and not decision.escalate
    assert decision.breaches == ()
    assert decision.next_deadline == T0 + timedelta(minutes=15)


def test_breach_escalates_to_the_next_receiver(receivers: dict[str, Receiver]) -> None:
    decision = decide_escalation(
        receiver="store-ops",
        assigned_at=T0,
        acked_at=None,
        receivers=receivers,
        now=T0 + timedelta(minutes=16),
    )

    assert decision.escalate and decision.receiver == "store-lead"
    assert [b.receiver for b in decision.breaches] == ["store-ops"]
    # The lead's SLA runs from when the alert reached them, i.e. the first deadline.
    assert decision.assigned_at == T0 + timedelta(minutes=15)
    assert decision.next_deadline == T0 + timedelta(minutes=45)


def test_missed_several_deadlines_goes_straight_up_the_chain(
    receivers: dict[str, Receiver],
) -> None:
    decision = decide_escalation(
        receiver="store-ops",
        assigned_at=T0,
        acked_at=None,
        receivers=receivers,
        now=T0 + timedelta(hours=2),
    )

    assert decision.receiver == "cx-director"
    assert [b.receiver for b in decision.breaches] == ["store-ops", "store-lead"]
    assert decision.next_deadline is None


def test_end_of_chain_reports_the_breach_without_escalating(
    receivers: dict[str, Receiver],
) -> None:
    decision = decide_escalation(
        receiver="store-lead",
        assigned_at=T0,
        acked_at=None,
        receivers={
            **receivers,
            "store-lead": receivers["store-lead"].model_copy(update={"escalate_to": None}),
        },
        now=T0 + timedelta(hours=1),
    )

    assert decision.receiver == "store-lead" and not decision.escalate
    assert [b.deadline for b in decision.breaches] == [T0 + timedelta(minutes=30)]


def test_acknowledged_or_sla_less_alerts_never_escalate(receivers: dict[str, Receiver]) -> None:
    late = T0 + timedelta(hours=3)

    acked = decide_escalation(
        receiver="store-ops", assigned_at=T0, acked_at=T0 + timedelta(minutes=5),
        receivers=receivers, now=late,
    )  # fmt: skip
    no_sla = decide_escalation(
        receiver="no-sla", assigned_at=T0, acked_at=None, receivers=receivers, now=late
    )

    assert acked.receiver == "store-ops" and not acked.breaches
    assert no_sla.receiver == "no-sla" and not no_sla.breaches and no_sla.next_deadline is None


def test_sla_breach_detection() -> None:
    sla = timedelta(minutes=15)

    assert not sla_breached(assigned_at=T0, ack_sla=sla, acked_at=None, now=T0 + sla)
    assert sla_breached(assigned_at=T0, ack_sla=sla, acked_at=None, now=T0 + sla * 2)
    # Acknowledged late is still a breach; on time is not.
    late_ack = T0 + timedelta(minutes=20)
    assert sla_breached(assigned_at=T0, ack_sla=sla, acked_at=late_ack, now=T0 + sla * 4)
    early_ack = T0 + timedelta(minutes=10)
    assert not sla_breached(assigned_at=T0, ack_sla=sla, acked_at=early_ack, now=T0 + sla * 4)
    assert not sla_breached(assigned_at=T0, ack_sla=None, acked_at=None, now=T0 + sla * 4)
