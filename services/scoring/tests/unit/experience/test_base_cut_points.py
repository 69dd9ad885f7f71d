"""Cut points from per-partition histograms equal a brute-force ranking of the whole base."""

from __future__ import annotations

import random

from cxm_scoring.domain.decile import compute_decile_cuts, decile_of
from cxm_scoring.experience.base import partition_histogram, recompute_cuts


def test_cuts_from_partition_histograms_match_the_whole_base() -> None:
    rng = random.Random(5)
    rows = [
        (float(rng.randint(1, 5000)), rng.randint(1, 9), rng.randint(19000, 19100))
        for _ in range(997)
    ]
    parts = [partition_histogram(rows[i::3]) for i in range(3)]
    result = recompute_cuts(parts)
    assert result is not None
    deciles, rfm = result
    brute = compute_decile_cuts(amounts=[r[0] for r in rows], computed_at=0.0)
    assert deciles.cuts == brute.cuts and deciles.base_size == 997
    for amount, *_ in rows:
        assert decile_of(amount=amount, cuts=deciles) == decile_of(amount=amount, cuts=brute)
    assert rfm.base_size == 997


def test_no_purchasers_means_no_cut_points() -> None:
    assert recompute_cuts([partition_histogram([])]) is None
