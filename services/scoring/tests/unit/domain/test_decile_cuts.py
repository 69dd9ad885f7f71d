"""Decile of a customer against the base: brute force, top spenders in decile 1."""

import json
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from cxm_scoring.domain.decile import DecileCuts, compute_decile_cuts, decile_of, decile_report

amounts_strategy = st.one_of(
    st.lists(st.sampled_from([100.0, 250.0, 999.5, 5000.0]), min_size=1, max_size=100),
    st.lists(st.floats(min_value=0.01, max_value=1e7, allow_nan=False), min_size=1, max_size=150),
)


def brute_force_deciles(amounts: list[float]) -> dict[float, int]:
    """Sort by amount, biggest first, deal into 10 equal groups; ties take the first rank."""
    ranked = sorted(amounts, reverse=True)
    deciles: dict[float, int] = {}
    for i, a in enumerate(ranked):
        deciles.setdefault(a, 1 + (10 * i) // len(ranked))
    return deciles


@given(amounts=amounts_strategy)
def test_decile_matches_brute_force(amounts):
    cuts = compute_decile_cuts(amounts=amounts, computed_at=0.0)
    expected = brute_force_deciles(amounts)
    assert {a: decile_of(amount=a, cuts=cuts) for a in amounts} == expected


@given(amounts=amounts_strategy, a=st.floats(0.01, 1e7), b=st.floats(0.01, 1e7))
def test_spending_more_never_gives_a_worse_decile(amounts, a, b):
    cuts = compute_decile_cuts(amounts=amounts, computed_at=0.0)
    low, high = sorted((a, b))
    assert decile_of(amount=high, cuts=cuts) <= decile_of(amount=low, cuts=cuts)


def test_thousand_customers_split_into_ten_groups_of_hundred():
    amounts = [float(i * 37 % 1000 + 1) for i in range(1000)]  # 1..1000, shuffled
    cuts = compute_decile_cuts(amounts=amounts, computed_at=0.0)
    counts = [0] * 10
    for a in amounts:
        counts[decile_of(amount=a, cuts=cuts) - 1] += 1
    assert counts == [100] * 10
    assert decile_of(amount=1000.0, cuts=cuts) == 1
    assert decile_of(amount=901.0, cuts=cuts) == 1
    assert decile_of(amount=900.0, cuts=cuts) == 2
    assert decile_of(amount=1.0, cuts=cuts) == 10


def test_non_purchasers_have_no_decile_and_do_not_count_in_the_base():
    cuts = compute_decile_cuts(amounts=[0.0, 0.0, *range(1, 11)], computed_at=5.0)
    assert cuts.base_size == 10
    assert decile_of(amount=0.0, cuts=cuts) is None
    assert decile_of(amount=10.0, cuts=cuts) == 1
    assert decile_of(amount=1.0, cuts=cuts) == 10
    empty = compute_decile_cuts(amounts=[], computed_at=5.0)
    assert decile_of(amount=3.0, cuts=empty) is None


def test_snapshot_survives_json_round_trip():
    cuts = compute_decile_cuts(amounts=[float(i) for i in range(1, 57)], computed_at=1.5e9)
    assert DecileCuts.from_dict(json.loads(json.dumps(cuts.to_dict()))) == cuts


@given(amounts=amounts_strategy)
def test_report_accounts_for_every_customer_and_all_sales(amounts):
    rows = decile_report(amounts=amounts)
    assert [r.decile for r in rows] == list(range(1, 11))
    assert sum(r.customers for r in rows) == len(amounts)
    assert abs(sum(r.total_amount for r in rows) - sum(amounts)) <= 1e-9 * sum(amounts)
    assert abs(sum(r.share_of_sales for r in rows) - 1.0) < 1e-9
    populated = [r for r in rows if r.customers]
    # Top deciles hold the top spenders: every amount in decile d exceeds those in later ones.
    for upper, lower in pairwise(populated):
        assert upper.min_amount > lower.max_amount
