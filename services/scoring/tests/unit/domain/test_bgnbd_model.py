"""BG/NBD: our estimator against the published CDNOW fit, closed forms against integration."""

import csv
import json
import math
from datetime import UTC, datetime
from importlib.metadata import distribution

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, special

from cxm_scoring.domain.bgnbd import (
    BgNbdParams,
    CustomerSummary,
    expected_purchases,
    expected_purchases_new_customer,
    fit,
    fit_from_purchases,
    log_likelihood,
    p_alive,
    summarise_purchases,
)
from cxm_scoring.domain.errors import ModelFitError

# Fader, Hardie & Lee (2005), table/section 5: CDNOW 1/10th sample, 2,357 customers, weeks.
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4
PARAMS = BgNbdParams(**PUBLISHED)


def lifetimes_dataset(name: str):
    """The CDNOW files shipped by the `lifetimes` package (read as data, never imported)."""
    return distribution("lifetimes").locate_file(f"lifetimes/datasets/{name}")


@pytest.fixture(scope="module")
def cdnow_summary() -> dict[int, CustomerSummary]:
    with open(lifetimes_dataset("cdnow_customers_summary.csv"), newline="") as f:
        return {
            int(row["ID"]): CustomerSummary(
                frequency=int(row["frequency"]), recency=float(row["recency"]), age=float(row["T"])
            )
            for row in csv.DictReader(f)
        }


@pytest.fixture(scope="module")
def cdnow_purchases() -> list[tuple[int, float]]:
    purchases = []
    with open(lifetimes_dataset("CDNOW_sample.txt")) as f:
        for line in f:
            _, customer, date, _, _ = line.split()
            at = datetime.strptime(date, "%Y%m%d").replace(tzinfo=UTC).timestamp()
            purchases.append((int(customer), at))
    return purchases


CALIBRATION_END = datetime(1997, 9, 30, tzinfo=UTC).timestamp()


def assert_published(params: BgNbdParams) -> None:
    for name, value in PUBLISHED.items():
        assert getattr(params, name) == pytest.approx(value, rel=0.01), name


def test_fit_reproduces_the_published_cdnow_estimates(cdnow_summary):
    assert len(cdnow_summary) == 2357
    params = fit(summaries=list(cdnow_summary.values()), fitted_at=1.0)
    assert_published(params)
    assert params.log_likelihood == pytest.approx(PUBLISHED_LL, abs=0.5)
    assert params.n_customers == 2357
    assert params.period_days == 7.0


def test_log_likelihood_at_the_published_estimates(cdnow_summary):
    ll = log_likelihood(params=PARAMS, summaries=list(cdnow_summary.values()))
    assert ll == pytest.approx(PUBLISHED_LL, abs=0.5)


def test_raw_purchase_history_summarises_to_the_published_cdnow_summary(
    cdnow_purchases, cdnow_summary
):
    summaries = summarise_purchases(purchases=cdnow_purchases, observation_end=CALIBRATION_END)
    assert summaries.keys() == cdnow_summary.keys()
    for customer, expected in cdnow_summary.items():
        got = summaries[customer]
        assert got.frequency == expected.frequency
        assert got.recency == pytest.approx(expected.recency, abs=0.006)
        assert got.age == pytest.approx(expected.age, abs=0.006)


def test_fit_from_raw_purchases_reproduces_the_published_estimates(cdnow_purchases):
    params = fit_from_purchases(purchases=cdnow_purchases, observation_end=CALIBRATION_END)
    assert_published(params)


def test_papers_worked_example_of_conditional_expectation():
    # The paper: x = 2, t_x = 30.43, T = 38.86 expects 1.226 purchases in the next 39 weeks.
    e = expected_purchases(params=PARAMS, frequency=2, recency=30.43, age=38.86, horizon=39)
    assert e == pytest.approx(1.226, abs=0.002)


# --- closed forms against numerical integration over the model's own definition ---
# Given lambda and p, P(data, alive) = (1-p)^x lambda^x e^{-lambda T} and
# P(data, dropped after the last purchase) = p (1-p)^{x-1} lambda^x e^{-lambda t_x}.


def beta_expectation(fn, a, b):
    """E[fn(p)] for p ~ Beta(a, b), with the Beta weight handled by the quadrature."""
    value, _ = integrate.quad(
        fn, 0, 1, weight="alg", wvar=(a - 1, b - 1), epsabs=0, epsrel=1e-11, limit=200
    )
    return value / special.beta(a, b)


def gamma_expectation(fn, r, alpha):
    """E[fn(lambda)] for lambda ~ Gamma(shape r, rate alpha)."""

    def integrand(lam):
        return fn(lam) * math.exp(
            r * math.log(alpha) + (r - 1) * math.log(lam) - alpha * lam - special.gammaln(r)
        )

    value, _ = integrate.quad(integrand, 0, math.inf, epsabs=0, epsrel=1e-11, limit=400)
    return value


customers = st.tuples(st.integers(1, 12), st.floats(0.5, 60), st.floats(0, 1)).map(
    lambda t: CustomerSummary(frequency=t[0], recency=t[1] * t[2], age=t[1])
)


@given(customer=customers)
def test_p_alive_matches_integration(customer):
    x, t_x, age = customer.frequency, customer.recency, customer.age
    r, alpha, a, b = PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b
    alive = beta_expectation(lambda p: (1 - p) ** x, a, b) * gamma_expectation(
        lambda lam: lam**x * math.exp(-lam * age), r, alpha
    )
    dropped = beta_expectation(lambda p: p * (1 - p) ** (x - 1), a, b) * gamma_expectation(
        lambda lam: lam**x * math.exp(-lam * t_x), r, alpha
    )
    expected = alive / (alive + dropped)
    got = p_alive(params=PARAMS, frequency=x, recency=t_x, age=age)
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("x", "t_x", "age", "horizon"),
    [(2, 30.43, 38.86, 39.0), (0, 0.0, 20.0, 52.0), (7, 10.0, 35.0, 10.0)],
)
def test_conditional_expectation_matches_integration(x, t_x, age, horizon):
    r, alpha, a, b = PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b
    # Integrate lambda out in closed form (Gamma moments), p numerically:
    # E[Y | lambda, p, alive] = (1 - e^{-lambda p t}) / p.
    k = math.exp(special.gammaln(r + x) - special.gammaln(r) + r * math.log(alpha))

    def gamma_part(s):
        return k * ((alpha + s) ** -(r + x))

    def growth_over_p(p):
        # (gamma_part(T) - gamma_part(T + p t)) / p, stable near p = 0 and exact at 0.
        u = horizon / (alpha + age)
        shrink = (r + x) * u if p == 0 else -math.expm1(-(r + x) * math.log1p(p * u)) / p
        return gamma_part(age) * shrink

    numerator = beta_expectation(lambda p: (1 - p) ** x * growth_over_p(p), a, b)
    likelihood = beta_expectation(lambda p: (1 - p) ** x, a, b) * gamma_part(age)
    if x > 0:
        likelihood += beta_expectation(lambda p: p * (1 - p) ** (x - 1), a, b) * gamma_part(t_x)
    got = expected_purchases(params=PARAMS, frequency=x, recency=t_x, age=age, horizon=horizon)
    assert got == pytest.approx(numerator / likelihood, rel=1e-6)


@pytest.mark.parametrize("horizon", [1.0, 39.0, 78.0])
def test_new_customer_expectation_matches_integration(horizon):
    r, alpha, a, b = PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b
    # E[X(t) | p] = E_lambda[(1 - e^{-lambda p t}) / p] = (1 - (alpha / (alpha + p t))^r) / p
    u = horizon / alpha

    def growth_over_p(p):
        return r * u if p == 0 else -math.expm1(-r * math.log1p(p * u)) / p

    expected = beta_expectation(growth_over_p, a, b)
    got = expected_purchases_new_customer(params=PARAMS, horizon=horizon)
    assert got == pytest.approx(expected, rel=1e-6)


def test_p_alive_behaves_as_a_customer_would_expect():
    assert p_alive(params=PARAMS, frequency=0, recency=0, age=50) == 1.0
    # Just bought: more likely alive than one whose last purchase was long ago.
    fresh = p_alive(params=PARAMS, frequency=5, recency=38, age=39)
    stale = p_alive(params=PARAMS, frequency=5, recency=5, age=39)
    assert fresh > stale
    # Silence weighs more for a frequent buyer than for an occasional one.
    assert p_alive(params=PARAMS, frequency=20, recency=5, age=39) < stale
    # Extreme inputs stay in range instead of overflowing.
    extreme = p_alive(params=PARAMS, frequency=10_000, recency=0.1, age=10_000)
    assert 0.0 <= extreme < 1e-100


def test_params_json_round_trip():
    params = BgNbdParams(
        r=0.24, alpha=4.4, a=0.79, b=2.4, log_likelihood=-9582.4, n_customers=2357, fitted_at=1.7e9
    )
    assert BgNbdParams.from_json(params.to_json()) == params
    assert json.loads(params.to_json())["model"] == "bgnbd"


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"model": "pareto", "r": 1, "alpha": 1, "a": 1, "b": 1}, "model"),
        ({"model": "bgnbd", "r": -1, "alpha": 1, "a": 1, "b": 1}, "r:"),
        ({"model": "bgnbd", "r": 1, "alpha": 1, "a": 1, "b": float("nan")}, "b:"),
    ],
)
def test_bad_params_json_is_refused(doc, problem):
    with pytest.raises(ValueError, match=problem):
        BgNbdParams.from_json(json.dumps(doc))


@pytest.mark.parametrize(
    ("summaries", "problem"),
    [
        ([CustomerSummary(1, 1.0, 2.0)] * 3, "at least 4"),
        ([CustomerSummary(1, 3.0, 2.0)] * 5, "recency"),
        ([CustomerSummary(0, 1.0, 2.0)] * 5, "recency"),
        ([CustomerSummary(-1, 0.0, 2.0)] * 5, "frequency"),
    ],
)
def test_unusable_summaries_are_refused(summaries, problem):
    with pytest.raises(ModelFitError, match=problem):
        fit(summaries=summaries)
