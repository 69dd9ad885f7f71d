"""The BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way").

While alive a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha); after each
purchase they drop out with probability p ~ Beta(a, b). A customer is summarised by
(x, t_x, T): repeat purchases x, time of the last purchase t_x and age T, both measured from the
first purchase, in periods of ``period_days`` (7: weeks, as in the paper).

Two halves with different cost rules:

- ``fit`` / ``fit_from_purchases``: maximum likelihood with numpy/scipy, run offline by the
  ``fit-churn-model`` command; the result is a ``BgNbdParams`` written as JSON.
- ``p_alive`` (per event): plain-Python arithmetic on the loaded parameters, O(1).
  ``expected_purchases`` needs a Gauss hypergeometric function (scipy) and is for read-outs
  such as lifetime value, not the per-event path.

This estimator is our own; it is checked against the paper's CDNOW estimates in the tests.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special

from cxm_scoring.domain.errors import ModelFitError
from cxm_scoring.domain.purchases import DAY_S, PurchaseStats, utc_day

DEFAULT_PERIOD_DAYS = 7.0


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """(x, t_x, T) of one customer, times in periods since their first purchase."""

    frequency: int  # x: repeat purchases (purchase days after the first)
    recency: float  # t_x
    age: float  # T


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """Fitted parameters plus what is needed to use them right (the time unit)."""

    r: float
    alpha: float
    a: float
    b: float
    period_days: float = DEFAULT_PERIOD_DAYS
    log_likelihood: float | None = None
    n_customers: int | None = None
    fitted_at: float | None = None

    def to_json(self) -> str:
        return json.dumps({"model": "bgnbd", **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BgNbdParams:
        data = json.loads(text)
        if data.pop("model", None) != "bgnbd":
            raise ValueError("model: expected 'bgnbd'")
        params = cls(**data)
        for name in ("r", "alpha", "a", "b", "period_days"):
            value = getattr(params, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        return params


def _arrays(
    summaries: Sequence[CustomerSummary],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.array([s.frequency for s in summaries], dtype=float)
    t_x = np.array([s.recency for s in summaries], dtype=float)
    age = np.array([s.age for s in summaries], dtype=float)
    return x, t_x, age


def _log_likelihoods(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, age: np.ndarray
) -> np.ndarray:
    """Per-customer log-likelihood, equation (6) of the paper, in log space for stability."""
    common = special.gammaln(r + x) - special.gammaln(r) + r * math.log(alpha)
    alive = special.betaln(a, b + x) - special.betaln(a, b) - (r + x) * np.log(alpha + age)
    # The dropped-out term exists only for x > 0; b + x - 1 would be meaningless at x = 0.
    x1 = np.maximum(x, 1.0)
    dropped = special.betaln(a + 1, b + x1 - 1) - special.betaln(a, b)
    dropped = dropped - (r + x) * np.log(alpha + t_x)
    dropped = np.where(x > 0, dropped, -np.inf)
    return common + np.logaddexp(alive, dropped)


def log_likelihood(*, params: BgNbdParams, summaries: Sequence[CustomerSummary]) -> float:
    x, t_x, age = _arrays(summaries)
    return float(np.sum(_log_likelihoods(params.r, params.alpha, params.a, params.b, x, t_x, age)))


def _check_summaries(x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> None:
    if len(x) < 4:
        raise ModelFitError(f"need at least 4 customers to fit 4 parameters, got {len(x)}")
    if np.any(x < 0) or np.any(x != np.floor(x)):
        raise ModelFitError("frequency: must be whole numbers >= 0")
    if np.any(t_x < 0) or np.any(t_x > age) or np.any(age <= 0):
        raise ModelFitError("recency/age: need 0 <= recency <= age and age > 0")
    if np.any((x == 0) & (t_x != 0)):
        raise ModelFitError("recency: must be 0 for customers without repeat purchases")


def fit(
    *,
    summaries: Sequence[CustomerSummary],
    period_days: float = DEFAULT_PERIOD_DAYS,
    fitted_at: float | None = None,
) -> BgNbdParams:
    """Maximum-likelihood (r, alpha, a, b) from per-customer summaries."""
    x, t_x, age = _arrays(summaries)
    _check_summaries(x, t_x, age)
    # Customers with equal (x, t_x, T) contribute equal terms: fit on the distinct rows.
    rows, counts = np.unique(np.column_stack([x, t_x, age]), axis=0, return_counts=True)
    ux, ut, uage = rows[:, 0], rows[:, 1], rows[:, 2]
    weights = counts.astype(float)
    scale = float(np.sum(weights))

    def objective(log_params: np.ndarray) -> float:
        r, alpha, a, b = np.exp(log_params)
        ll = _log_likelihoods(r, alpha, a, b, ux, ut, uage)
        value = -float(np.dot(weights, ll)) / scale
        # Outside the region where the terms are finite, steer the optimiser back.
        return value if math.isfinite(value) else 1e100

    # Parameters are optimised in log space: all four must stay positive.
    result = optimize.minimize(
        objective,
        x0=np.zeros(4),
        method="Nelder-Mead",
        options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 20_000, "maxfev": 40_000},
    )
    if not result.success:
        raise ModelFitError(f"BG/NBD fit did not converge: {result.message}")
    r, alpha, a, b = (float(v) for v in np.exp(result.x))
    return BgNbdParams(
        r=r,
        alpha=alpha,
        a=a,
        b=b,
        period_days=period_days,
        log_likelihood=-float(result.fun) * scale,
        n_customers=len(x),
        fitted_at=fitted_at,
    )


def summary_from_days(
    *, purchase_days: Iterable[int], end_day: int, period_days: float = DEFAULT_PERIOD_DAYS
) -> CustomerSummary | None:
    """(x, t_x, T) from the UTC days a customer bought on; days after ``end_day`` are ignored.

    Several purchases on one day count as one purchase occasion, as in the paper's data. None
    when the customer had not bought by ``end_day``.
    """
    days = sorted({d for d in purchase_days if d <= end_day})
    if not days:
        return None
    first = days[0]
    return CustomerSummary(
        frequency=len(days) - 1,
        recency=(days[-1] - first) / period_days,
        age=(end_day - first) / period_days,
    )


def summary_from_stats(
    stats: PurchaseStats, *, as_of: float, period_days: float = DEFAULT_PERIOD_DAYS
) -> CustomerSummary | None:
    """(x, t_x, T) of a live customer's ``PurchaseStats`` at ``as_of`` (O(1))."""
    if stats.first_day is None or stats.last_day is None:
        return None
    end_day = max(utc_day(as_of), stats.last_day)
    return CustomerSummary(
        frequency=max(stats.purchase_days - 1, 0),
        recency=(stats.last_day - stats.first_day) / period_days,
        age=(end_day - stats.first_day) / period_days,
    )


def summarise_purchases(
    *,
    purchases: Iterable[tuple[Hashable, float]],
    observation_end: float,
    period_days: float = DEFAULT_PERIOD_DAYS,
) -> dict[Hashable, CustomerSummary]:
    """Per-customer summaries from raw (customer id, purchase time) history.

    ``observation_end`` is the end of the calibration period (a time inside its last day).
    """
    days: defaultdict[Hashable, set[int]] = defaultdict(set)
    for customer, at in purchases:
        days[customer].add(utc_day(at))
    end_day = utc_day(observation_end)
    summaries: dict[Hashable, CustomerSummary] = {}
    for customer, customer_days in days.items():
        summary = summary_from_days(
            purchase_days=customer_days, end_day=end_day, period_days=period_days
        )
        if summary is not None:
            summaries[customer] = summary
    return summaries


def fit_from_purchases(
    *,
    purchases: Iterable[tuple[Hashable, float]],
    observation_end: float,
    period_days: float = DEFAULT_PERIOD_DAYS,
    fitted_at: float | None = None,
) -> BgNbdParams:
    """Summarise raw history up to ``observation_end`` and fit the model to it.

    Customers whose first purchase falls on the last day have age 0 and carry no information
    about their rhythm; they are left out of the fit.
    """
    summaries = summarise_purchases(
        purchases=purchases, observation_end=observation_end, period_days=period_days
    )
    usable = [s for s in summaries.values() if s.age > 0]
    return fit(summaries=usable, period_days=period_days, fitted_at=fitted_at)


def p_alive(*, params: BgNbdParams, frequency: int, recency: float, age: float) -> float:
    """P(still alive | x, t_x, T), equation (A8) of the paper's appendix. Plain Python, O(1).

    By the model's construction a customer with no repeat purchase (x = 0) cannot have dropped
    out (drop-out happens right after a purchase), so the answer is 1 for them.
    """
    if frequency == 0:
        return 1.0
    log_odds = math.log(params.a / (params.b + frequency - 1)) + (params.r + frequency) * (
        math.log(params.alpha + age) - math.log(params.alpha + recency)
    )
    # 1 / (1 + e^log_odds), written so that neither branch can overflow.
    if log_odds > 0:
        e = math.exp(-log_odds)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(log_odds))


def expected_purchases(
    *, params: BgNbdParams, frequency: int, recency: float, age: float, horizon: float
) -> float:
    """E[purchases in (T, T + horizon] | x, t_x, T], equation (10) of the paper (periods)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = frequency
    z = horizon / (alpha + age + horizon)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    growth = 1.0 - ((alpha + age) / (alpha + age + horizon)) ** (r + x) * hyp
    alive_odds = 0.0
    if x > 0:
        alive_odds = (a / (b + x - 1)) * ((alpha + age) / (alpha + recency)) ** (r + x)
    return float((a + b + x - 1) / (a - 1) * growth / (1.0 + alive_odds))


def expected_purchases_new_customer(*, params: BgNbdParams, horizon: float) -> float:
    """E[X(t)]: purchases expected of a randomly chosen new customer in ``horizon`` periods,
    equation (7) of the paper."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    hyp = special.hyp2f1(r, b, a + b - 1, horizon / (alpha + horizon))
    return float((a + b - 1) / (a - 1) * (1.0 - (alpha / (alpha + horizon)) ** r * hyp))


def period_of(seconds: float, *, params: BgNbdParams) -> float:
    """A duration in seconds as model periods."""
    return seconds / (params.period_days * DAY_S)
