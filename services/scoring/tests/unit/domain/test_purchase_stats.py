"""Per-customer purchase stats (inputs of RFM, decile and BG/NBD) against brute force."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxm_scoring.domain.bgnbd import summary_from_days, summary_from_stats
from cxm_scoring.domain.errors import InvalidPurchaseError
from cxm_scoring.domain.purchases import (
    PurchaseStats,
    merge_purchase_stats,
    recency_days,
    record_purchase,
    utc_day,
)

DAY = 86_400.0
T0 = 1_700_000_000.0


def orders(span_days: float):
    return st.lists(
        st.tuples(st.floats(T0, T0 + span_days * DAY), st.floats(0, 10_000)), max_size=40
    )


def build(events):
    stats = PurchaseStats()
    for at, amount in events:
        record_purchase(stats, at=at, amount=amount)
    return stats


def check_against_brute_force(stats, events):
    assert stats.order_count == len(events)
    assert stats.total_amount == pytest.approx(sum(a for _, a in events))
    days = {utc_day(at) for at, _ in events}
    assert stats.purchase_days == len(days)
    assert stats.first_day == (min(days) if days else None)
    assert stats.last_day == (max(days) if days else None)
    assert stats.last_at == (max(at for at, _ in events) if events else None)


@given(events=orders(3 * 365))
def test_in_order_events_match_brute_force(events):
    check_against_brute_force(build(sorted(events)), events)


@given(events=orders(30), order=st.randoms(use_true_random=False))
def test_late_and_duplicate_day_orders_within_the_remembered_span_count_once(events, order):
    shuffled = list(events)
    order.shuffle(shuffled)
    check_against_brute_force(build(shuffled), events)


@given(a=orders(30), b=orders(30))
def test_merge_matches_one_customer_with_both_histories(a, b):
    merged = merge_purchase_stats(build(sorted(a)), build(sorted(b)))
    check_against_brute_force(merged, a + b)
    assert merged == merge_purchase_stats(build(sorted(b)), build(sorted(a)))


def test_shared_first_day_counts_once_even_when_no_longer_recent():
    a = build([(T0, 10.0), (T0 + 100 * DAY, 10.0)])
    b = build([(T0 + 3600, 5.0), (T0 + 200 * DAY, 5.0)])
    assert merge_purchase_stats(a, b).purchase_days == 3


@given(events=orders(3 * 365), as_of_offset=st.floats(0, 5 * 365))
def test_bgnbd_summary_of_live_stats_matches_summary_of_raw_days(events, as_of_offset):
    events = sorted(events)
    as_of = T0 + (3 * 365 + as_of_offset) * DAY
    live = summary_from_stats(build(events), as_of=as_of)
    raw = summary_from_days(purchase_days=[utc_day(at) for at, _ in events], end_day=utc_day(as_of))
    assert live == raw


def test_recency_in_days():
    stats = build([(T0, 1.0), (T0 + 10 * DAY, 1.0)])
    assert recency_days(stats, as_of=T0 + 12.5 * DAY) == pytest.approx(2.5)
    assert recency_days(PurchaseStats(), as_of=T0) is None


@pytest.mark.parametrize("amount", [-1.0, float("nan"), float("inf"), "12", True])
def test_bad_amount_is_refused(amount):
    with pytest.raises(InvalidPurchaseError, match="amount"):
        record_purchase(PurchaseStats(), at=T0, amount=amount)


@given(events=orders(100))
def test_stats_survive_json_round_trip(events):
    stats = build(events)
    assert PurchaseStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
