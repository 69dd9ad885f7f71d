"""Category/taste/brand affinity against brute-force decayed sums, and merging."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxm_scoring.domain.ctb import (
    AffinityState,
    ctb_profile,
    merge_affinities,
    record_items,
    top_affinities,
)
from cxm_scoring.domain.errors import InvalidPurchaseError

DAY = 86_400.0
T0 = 1_700_000_000.0
HALF_LIFE = 90.0

item_strategy = st.fixed_dictionaries(
    {
        "sku": st.text(max_size=3),
        "category": st.sampled_from(["shoes", "bags", "coats", "hats"]),
        "brand": st.sampled_from(["acme", "globex", "initech"]),
        "price": st.floats(0, 500),
        "quantity": st.integers(1, 4),
    },
    optional={"colour": st.sampled_from(["red", "navy"]), "size": st.sampled_from(["S", "M"])},
)
purchases_strategy = st.lists(
    st.tuples(st.floats(T0, T0 + 720 * DAY), st.lists(item_strategy, min_size=1, max_size=4)),
    max_size=15,
)


def build(purchases, half_life=HALF_LIFE):
    state = AffinityState(half_life_days=half_life)
    for at, items in purchases:
        record_items(state, items=items, at=at)
    return state


def brute_scores(purchases, dimension, as_of, half_life=HALF_LIFE):
    scores: dict[str, float] = {}
    for at, items in purchases:
        for item in items:
            value = item.get(dimension)
            if value is not None:
                decay = 2.0 ** (-(as_of - at) / (half_life * DAY))
                scores[value] = scores.get(value, 0.0) + item["quantity"] * decay
    return scores


def assert_matches_brute_force(state, purchases, as_of, k=2, half_life=HALF_LIFE):
    for dimension in ("category", "brand", "colour", "size"):
        expected = brute_scores(purchases, dimension, as_of, half_life)
        got = top_affinities(state, dimension=dimension, as_of=as_of, k=k)
        assert len(got) == min(k, len(expected))
        total = sum(expected.values())
        for a in got:
            assert a.score == pytest.approx(expected[a.value], rel=1e-9, abs=1e-300)
            assert a.share == pytest.approx(expected[a.value] / total, rel=1e-9)
        if got:
            # The returned values are the k strongest (up to rounding among near-ties).
            weakest = got[-1].score
            others = [s for v, s in expected.items() if v not in {a.value for a in got}]
            assert all(s <= weakest * (1 + 1e-9) for s in others)


@given(purchases=purchases_strategy, order=st.randoms(use_true_random=False))
def test_affinity_matches_brute_force_in_any_arrival_order(purchases, order):
    shuffled = list(purchases)
    order.shuffle(shuffled)
    assert_matches_brute_force(build(shuffled), purchases, as_of=T0 + 800 * DAY)


@given(purchases=purchases_strategy)
def test_short_half_life_rebases_without_overflow(purchases):
    # Half-life of 1 day over two years: weights would reach 2**720 without rebasing (the
    # landmark moves at 2**200), while the brute force's 2**-720 still fits in a float.
    state = build(sorted(purchases, key=lambda p: p[0]), half_life=1.0)
    for values in state.weights.values():
        assert all(math.isfinite(w) for w in values.values())
    last = max((at for at, _ in purchases), default=T0)
    assert_matches_brute_force(state, purchases, as_of=last + 3600, half_life=1.0)


@given(a=purchases_strategy, b=purchases_strategy)
def test_merge_matches_one_customer_with_both_histories(a, b):
    merged = merge_affinities(build(a), build(b))
    assert_matches_brute_force(merged, a + b, as_of=T0 + 800 * DAY, k=4)


def profile(state):
    return {
        d: [(x.value, x.score) for x in xs]
        for d, xs in ctb_profile(state, as_of=T0 + 800 * DAY, k=10).items()
    }


def assert_same_profile(p, q):
    assert p.keys() == q.keys()
    for d in p:
        assert dict(p[d]) == pytest.approx(dict(q[d]), rel=1e-9)


@given(a=purchases_strategy, b=purchases_strategy, c=purchases_strategy)
def test_merge_is_commutative_and_associative(a, b, c):
    sa, sb, sc = build(a), build(b), build(c)
    assert_same_profile(profile(merge_affinities(sa, sb)), profile(merge_affinities(sb, sa)))
    left = merge_affinities(merge_affinities(sa, sb), sc)
    right = merge_affinities(sa, merge_affinities(sb, sc))
    assert_same_profile(profile(left), profile(right))


def test_recent_taste_outweighs_an_old_one():
    state = AffinityState()
    record_items(state, items=[{"category": "shoes", "quantity": 3}], at=T0)
    record_items(state, items=[{"category": "bags", "quantity": 1}], at=T0 + 365 * DAY)
    top = top_affinities(state, dimension="category", as_of=T0 + 365 * DAY, k=1)
    assert top[0].value == "bags"  # 3 * 2**(-365/90) = 0.18 < 1


def test_taste_attributes_spellings_and_returns():
    state = AffinityState()
    items = [
        {"sku": "a", "category": " coats ", "color": "navy", "attributes": {"style": "casual"}},
        {"sku": "b", "category": "coats", "quantity": 0, "colour": "red"},  # nothing bought
        # Blank, null and boolean values are no taste; a numeric size is one.
        {"sku": "c", "category": "", "brand": None, "style": True, "size": 42},
    ]
    record_items(state, items=items, at=T0)
    top = ctb_profile(state, as_of=T0, k=3)
    assert {d: [a.value for a in xs] for d, xs in top.items()} == {
        "category": ["coats"],
        "colour": ["navy"],
        "style": ["casual"],
        "size": ["42"],
    }
    assert top["category"][0].score == pytest.approx(1.0)


@pytest.mark.parametrize("item", [{"quantity": "two"}, {"quantity": float("nan")}, "sku-1"])
def test_unusable_items_are_refused(item):
    with pytest.raises(InvalidPurchaseError, match="items"):
        record_items(AffinityState(), items=[item], at=T0)


def test_unknown_dimension_is_refused():
    with pytest.raises(ValueError, match="dimension"):
        top_affinities(AffinityState(), dimension="flavour", as_of=T0)


@given(purchases=purchases_strategy)
def test_state_survives_json_round_trip(purchases):
    state = build(purchases)
    assert AffinityState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


def test_landmark_moves_forward_before_weights_overflow():
    state = AffinityState(half_life_days=1.0)
    record_items(state, items=[{"category": "shoes"}], at=T0)
    record_items(state, items=[{"category": "bags"}], at=T0 + 300 * DAY)
    assert state.landmark == T0 + 300 * DAY
    top = top_affinities(state, dimension="category", as_of=T0 + 300 * DAY, k=2)
    assert [(a.value, a.score) for a in top] == [("bags", 1.0), ("shoes", pytest.approx(2**-300))]
