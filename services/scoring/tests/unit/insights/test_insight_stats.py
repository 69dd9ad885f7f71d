"""The statistics from sufficient statistics agree with the textbook computations on raw data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from cxm_scoring.insights.stats import Moments, ols_from_patterns, two_proportions, welch


def moments(values: np.ndarray) -> Moments:
    return Moments(float(len(values)), float(values.sum()), float((values**2).sum()))


def test_welch_matches_scipy_on_raw_values() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(5.0, 1.0, 80), rng.normal(5.6, 2.0, 50)
    diff = welch(moments(a), moments(b))
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert diff.difference == pytest.approx(b.mean() - a.mean())
    assert diff.p_value == pytest.approx(ref.pvalue, rel=1e-6)
    ci = ref.confidence_interval(0.95)
    assert (diff.ci_low, diff.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-6)


def test_welch_needs_two_values_per_group() -> None:
    diff = welch(Moments(1, 3.0, 9.0), Moments(5, 10.0, 30.0))
    assert diff.difference == pytest.approx(-1.0)
    assert diff.p_value is None and not diff.significant


def test_two_proportions_z_test() -> None:
    # 30/200 vs 60/200: pooled p = 0.225, z = 0.15 / sqrt(0.225 * 0.775 * 0.01)
    diff = two_proportions(30, 200, 60, 200)
    z = 0.15 / np.sqrt(0.225 * 0.775 * 0.01)
    assert diff.difference == pytest.approx(0.15)
    assert diff.p_value == pytest.approx(2 * stats.norm.sf(z))
    half = 1.959964 * np.sqrt(0.15 * 0.85 / 200 + 0.3 * 0.7 / 200)
    assert (diff.ci_low, diff.ci_high) == pytest.approx((0.15 - half, 0.15 + half), rel=1e-5)
    assert diff.significant


def test_two_proportions_equal_rates_are_not_significant() -> None:
    diff = two_proportions(20, 100, 20, 100)
    assert diff.difference == 0 and diff.p_value == pytest.approx(1.0)
    assert not diff.significant


def test_ols_from_patterns_equals_least_squares_on_the_rows() -> None:
    rng = np.random.default_rng(3)
    n = 600
    x = rng.random((n, 2)) < [0.3, 0.2]
    y = 8.0 - 3.0 * x[:, 0] - 1.0 * x[:, 1] + rng.normal(0, 1.5, n)
    patterns: dict[tuple[bool, ...], Moments] = {}
    for row, value in zip(x, y, strict=True):
        key = (bool(row[0]), bool(row[1]))
        patterns[key] = patterns.get(key, Moments()) + Moments(1, value, value * value)
    fit = ols_from_patterns(["a", "b"], patterns)
    assert fit is not None
    design = np.column_stack([np.ones(n), x.astype(float)])
    beta, rss, *_ = np.linalg.lstsq(design, y, rcond=None)
    cov = rss[0] / (n - 3) * np.linalg.inv(design.T @ design)
    assert fit.intercept == pytest.approx(beta[0])
    for j, coef in enumerate(fit.coefficients, start=1):
        assert coef.estimate == pytest.approx(beta[j])
        assert coef.std_error == pytest.approx(np.sqrt(cov[j, j]))
        assert coef.ci_low < coef.estimate < coef.ci_high
    assert fit.coefficients[0].significant


def test_ols_interval_covers_the_planted_effect_95_percent_of_the_time() -> None:
    covered = 0
    runs = 200
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        n = 300
        x = rng.random((n, 2)) < [0.3, 0.2]
        y = 8.0 - 3.0 * x[:, 0] - 1.0 * x[:, 1] + rng.normal(0, 1.5, n)
        patterns: dict[tuple[bool, ...], Moments] = {}
        for key in ((False, False), (False, True), (True, False), (True, True)):
            rows = y[(x[:, 0] == key[0]) & (x[:, 1] == key[1])]
            patterns[key] = moments(rows)
        fit = ols_from_patterns(["a", "b"], patterns)
        assert fit is not None
        a = fit.coefficients[0]
        covered += a.ci_low < -3.0 < a.ci_high
    assert 0.91 <= covered / runs <= 0.99


def test_ols_refuses_a_driver_that_is_always_present() -> None:
    patterns = {(True,): Moments(10, 50.0, 260.0)}
    assert ols_from_patterns(["a"], patterns) is None
