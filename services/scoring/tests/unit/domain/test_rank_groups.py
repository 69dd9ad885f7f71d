"""Equal-group cut points agree with a brute-force ranking of the base."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxm_scoring.domain.ranking import GroupCuts, equal_group_cuts

# Small integer pools produce many ties; floats produce (mostly) distinct values.
values_strategy = st.one_of(
    st.lists(st.integers(min_value=0, max_value=8), min_size=1, max_size=120),
    st.lists(
        st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=120,
    ),
)


def brute_force_groups(values: list[float], groups: int, higher_is_better: bool) -> list[int]:
    """Rank best first; each customer takes the group of the first rank its value holds."""
    ranked = sorted(values, reverse=higher_is_better)
    n = len(ranked)
    first_rank = {}
    for i, v in enumerate(ranked):
        first_rank.setdefault(v, i)
    return [1 + (groups * first_rank[v]) // n for v in values]


@given(values=values_strategy, groups=st.sampled_from([2, 5, 10]), high=st.booleans())
def test_group_of_matches_brute_force_ranking(values, groups, high):
    cuts = equal_group_cuts(values=values, groups=groups, higher_is_better=high)
    assert [cuts.group_of(v) for v in values] == brute_force_groups(values, groups, high)


@given(
    values=st.lists(
        st.integers(min_value=0, max_value=10**9), min_size=10, max_size=200, unique=True
    )
)
def test_distinct_values_make_groups_of_equal_size(values):
    cuts = equal_group_cuts(values=values, groups=10, higher_is_better=True)
    sizes = [0] * 10
    for v in values:
        sizes[cuts.group_of(v) - 1] += 1
    assert sum(sizes) == len(values)
    assert max(sizes) - min(sizes) <= 1
    if len(values) % 10 == 0:
        assert set(sizes) == {len(values) // 10}


def test_best_values_fall_in_group_one():
    cuts = equal_group_cuts(values=range(1, 101), groups=10, higher_is_better=True)
    assert cuts.group_of(100) == 1
    assert cuts.group_of(91) == 1
    assert cuts.group_of(90) == 2
    assert cuts.group_of(1) == 10
    low = equal_group_cuts(values=range(1, 101), groups=5, higher_is_better=False)
    assert low.group_of(1) == 1
    assert low.group_of(100) == 5


def test_values_outside_the_snapshot_clamp_to_the_end_groups():
    cuts = equal_group_cuts(values=range(100), groups=10, higher_is_better=True)
    assert cuts.group_of(10**9) == 1
    assert cuts.group_of(-5) == 10


def test_empty_base_puts_everyone_in_group_one():
    cuts = equal_group_cuts(values=[], groups=5, higher_is_better=True)
    assert cuts.cuts == ()
    assert cuts.group_of(42.0) == 1


def test_cuts_survive_json_round_trip():
    cuts = equal_group_cuts(values=[3.5, 1, 9, 12, 7, 7], groups=5, higher_is_better=False)
    assert GroupCuts.from_dict(json.loads(json.dumps(cuts.to_dict()))) == cuts


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"groups": 5, "higher_is_better": True, "cuts": [1, 2, 3]}, "expected 4 values"),
        ({"groups": 5, "higher_is_better": True, "cuts": [4, 3, 2, 1]}, "ascending"),
    ],
)
def test_malformed_cuts_are_refused(data, problem):
    with pytest.raises(ValueError, match=problem):
        GroupCuts.from_dict(data)


def test_fewer_than_two_groups_is_refused():
    with pytest.raises(ValueError, match="groups"):
        equal_group_cuts(values=[1, 2], groups=1, higher_is_better=True)
