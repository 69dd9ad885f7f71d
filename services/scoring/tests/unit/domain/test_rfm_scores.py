"""RFM quintile scores against brute force, and the segment grid."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxm_scoring.domain.rfm import (
    SEGMENT_GRID,
    RfmInput,
    RfmScores,
    RfmSegment,
    RfmThresholds,
    compute_rfm_thresholds,
    rfm_scores,
    rfm_segment,
)

base_strategy = st.lists(
    st.builds(
        RfmInput,
        recency_days=st.one_of(st.integers(0, 30), st.floats(0, 2000)),
        frequency=st.integers(1, 12),
        monetary=st.floats(1, 1e5),
    ),
    min_size=1,
    max_size=120,
)


def brute_force_scores(values: list[float], *, higher_is_better: bool) -> list[int]:
    """Best fifth of the ranking scores 5, the next 4, ...; ties share the better score."""
    ranked = sorted(values, reverse=higher_is_better)
    first = {}
    for i, v in enumerate(ranked):
        first.setdefault(v, i)
    return [5 - (5 * first[v]) // len(ranked) for v in values]


@given(base=base_strategy)
def test_scores_match_brute_force_quintiles(base):
    thresholds = compute_rfm_thresholds(base=base, computed_at=0.0)
    scores = [rfm_scores(value=c, thresholds=thresholds) for c in base]
    recency = [c.recency_days for c in base]
    assert [s.recency for s in scores] == brute_force_scores(recency, higher_is_better=False)
    frequency = [c.frequency for c in base]
    assert [s.frequency for s in scores] == brute_force_scores(frequency, higher_is_better=True)
    monetary = [c.monetary for c in base]
    assert [s.monetary for s in scores] == brute_force_scores(monetary, higher_is_better=True)


def test_most_recent_biggest_most_frequent_customer_is_a_champion():
    base = [
        RfmInput(recency_days=d, frequency=f, monetary=m)
        for d, f, m in zip(range(100), range(100, 0, -1), range(1000, 0, -10), strict=True)
    ]
    thresholds = compute_rfm_thresholds(base=base, computed_at=0.0)
    best = rfm_scores(value=base[0], thresholds=thresholds)
    worst = rfm_scores(value=base[-1], thresholds=thresholds)
    assert best.code == "555"
    assert worst.code == "111"
    assert rfm_segment(scores=best) is RfmSegment.CHAMPIONS
    assert rfm_segment(scores=worst) is RfmSegment.LOST


def test_thresholds_survive_json_round_trip():
    base = [RfmInput(recency_days=i * 3.5, frequency=i % 7, monetary=i * 11.0) for i in range(40)]
    thresholds = compute_rfm_thresholds(base=base, computed_at=1.7e9)
    restored = RfmThresholds.from_dict(json.loads(json.dumps(thresholds.to_dict())))
    assert restored == thresholds


@pytest.mark.parametrize(
    ("r", "f", "m", "segment"),
    [
        (5, 5, 5, RfmSegment.CHAMPIONS),
        (4, 5, 4, RfmSegment.CHAMPIONS),
        (4, 4, 3, RfmSegment.LOYAL),  # FM = 3.5 rounds half up to 4
        (3, 5, 5, RfmSegment.LOYAL),
        (5, 2, 3, RfmSegment.POTENTIAL_LOYALIST),
        (5, 1, 1, RfmSegment.NEW_CUSTOMERS),
        (4, 1, 1, RfmSegment.PROMISING),
        (3, 2, 3, RfmSegment.NEED_ATTENTION),
        (3, 1, 1, RfmSegment.ABOUT_TO_SLEEP),
        (2, 3, 3, RfmSegment.AT_RISK),
        (1, 5, 5, RfmSegment.CANT_LOSE_THEM),
        (2, 5, 5, RfmSegment.CANT_LOSE_THEM),
        (2, 1, 1, RfmSegment.HIBERNATING),
        (1, 1, 1, RfmSegment.LOST),
    ],
)
def test_segment_grid_cells(r, f, m, segment):
    assert rfm_segment(scores=RfmScores(recency=r, frequency=f, monetary=m)) is segment


def test_grid_covers_every_cell_and_every_segment():
    assert len(SEGMENT_GRID) == 5
    assert all(len(row) == 5 for row in SEGMENT_GRID)
    assert {s for row in SEGMENT_GRID for s in row} == set(RfmSegment)


def test_champions_need_recent_and_valuable_and_lost_is_the_worst_corner():
    for r in range(1, 6):
        for fm in range(1, 6):
            segment = SEGMENT_GRID[r - 1][fm - 1]
            if segment is RfmSegment.CHAMPIONS:
                assert r >= 4 and fm >= 4
            if segment in (RfmSegment.LOST, RfmSegment.HIBERNATING):
                assert r <= 2 and fm <= 2


def test_out_of_range_score_is_refused():
    with pytest.raises(ValueError, match="recency"):
        rfm_segment(scores=RfmScores(recency=6, frequency=1, monetary=1))
