"""The statistics behind the insights, from sufficient statistics only (counts, sums, sums of
squares), so partitions and workers can be summed before anything is computed. Pure: no I/O.

- ``welch``: difference of two means with Welch's t (unequal variances), its 95% interval and
  two-sided p-value;
- ``two_proportions``: difference of two proportions, unpooled Wald interval and the pooled
  two-proportion z test;
- ``ols_from_patterns``: ordinary least squares of an outcome on binary indicators given as
  (indicator pattern -> n, sum y, sum y^2), the classical standard errors, 95% intervals and
  p-values (t with n - k degrees of freedom). Exact: X'X, X'y and y'y follow from the patterns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
ALPHA = 1 - LEVEL


@dataclass(frozen=True, slots=True)
class Moments:
    """n, sum and sum of squares of one group's values."""

    n: float = 0.0
    total: float = 0.0
    squares: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """Sample variance (n - 1); None below two values."""
        if self.n < 2:
            return None
        return max(0.0, (self.squares - self.total * self.total / self.n) / (self.n - 1))

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.total + other.total, self.squares + other.squares)


@dataclass(frozen=True, slots=True)
class Difference:
    """``value`` (treatment) minus ``baseline``, with its 95% interval and two-sided p-value;
    None where the data cannot support it (too few observations, no variance)."""

    baseline: float | None
    value: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


def welch(baseline: Moments, treatment: Moments) -> Difference:
    m0, m1 = baseline.mean, treatment.mean
    v0, v1 = baseline.variance, treatment.variance
    if m0 is None or m1 is None:
        return Difference(m0, m1, None, None, None, None)
    diff = m1 - m0
    if v0 is None or v1 is None:
        return Difference(m0, m1, diff, None, None, None)
    a, b = v0 / baseline.n, v1 / treatment.n
    se = math.sqrt(a + b)
    if se == 0.0:
        return Difference(m0, m1, diff, diff, diff, 1.0 if diff == 0 else 0.0)
    df = (a + b) ** 2 / (a * a / (baseline.n - 1) + b * b / (treatment.n - 1))
    t = diff / se
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    p = float(2 * stats.t.sf(abs(t), df))
    return Difference(m0, m1, diff, diff - half, diff + half, p)


def two_proportions(baseline_hits: float, baseline_n: float, hits: float, n: float) -> Difference:
    if not baseline_n or not n:
        p0 = baseline_hits / baseline_n if baseline_n else None
        p1 = hits / n if n else None
        return Difference(p0, p1, None, None, None, None)
    p0, p1 = baseline_hits / baseline_n, hits / n
    diff = p1 - p0
    z_crit = float(stats.norm.ppf(1 - ALPHA / 2))
    se = math.sqrt(p0 * (1 - p0) / baseline_n + p1 * (1 - p1) / n)
    pooled = (baseline_hits + hits) / (baseline_n + n)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / baseline_n + 1 / n))
    if se_pooled == 0.0:
        return Difference(p0, p1, diff, diff, diff, 1.0)
    p = float(2 * stats.norm.sf(abs(diff) / se_pooled))
    return Difference(p0, p1, diff, diff - z_crit * se, diff + z_crit * se, p)


@dataclass(frozen=True, slots=True)
class Coefficient:
    name: str
    estimate: float
    std_error: float
    ci_low: float
    ci_high: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


@dataclass(frozen=True, slots=True)
class OlsFit:
    intercept: float
    coefficients: tuple[Coefficient, ...]
    n: int
    residual_sd: float


def ols_from_patterns(
    names: Sequence[str], patterns: Mapping[tuple[bool, ...], Moments]
) -> OlsFit | None:
    """y = b0 + sum_j b_j x_j over the observations summarised by ``patterns`` (each key the
    indicators x_1..x_k, in ``names`` order). None when the design is singular or leaves no
    residual degrees of freedom (a driver never or always present)."""
    k = len(names) + 1
    xtx = np.zeros((k, k))
    xty = np.zeros(k)
    yty = 0.0
    n = 0.0
    for pattern, m in patterns.items():
        x = np.array([1.0, *(1.0 if bit else 0.0 for bit in pattern)])
        xtx += m.n * np.outer(x, x)
        xty += m.total * x
        yty += m.squares
        n += m.n
    df = n - k
    if df < 1 or np.linalg.matrix_rank(xtx) < k:
        return None
    inverse = np.linalg.inv(xtx)
    beta = inverse @ xty
    rss = max(0.0, yty - float(beta @ xty))
    sigma2 = rss / df
    se = np.sqrt(np.maximum(np.diag(inverse) * sigma2, 0.0))
    t_crit = float(stats.t.ppf(1 - ALPHA / 2, df))
    coefficients = []
    for j, name in enumerate(names, start=1):
        b, s = float(beta[j]), float(se[j])
        p = float(2 * stats.t.sf(abs(b) / s, df)) if s > 0 else (1.0 if b == 0 else 0.0)
        coefficients.append(Coefficient(name, b, s, b - t_crit * s, b + t_crit * s, p))
    return OlsFit(float(beta[0]), tuple(coefficients), int(n), math.sqrt(sigma2))
