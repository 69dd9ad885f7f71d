"""Read-outs of the merged aggregates: funnels, ranked drivers, experiment comparisons. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cxm_scoring.insights import schemas
from cxm_scoring.insights.config import Funnel, InsightsConfig
from cxm_scoring.insights.state import (
    ALL,
    CONVERTED,
    EXPERIMENT_WIDTH,
    EXPOSED,
    OUTCOME_AT,
    REVENUE,
    REVENUE_SQ,
    Aggregate,
)
from cxm_scoring.insights.stats import (
    Difference,
    Moments,
    ols_from_patterns,
    two_proportions,
    welch,
)


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _breakdown(funnel: Funnel, counts: Sequence[float], segment: str) -> schemas.FunnelBreakdown:
    values = [round(c) for c in list(counts)[: len(funnel.steps)]]
    values += [0] * (len(funnel.steps) - len(values))
    steps = []
    worst: schemas.DropOff | None = None
    for i, step in enumerate(funnel.steps):
        prev = values[i - 1] if i else None
        conv = _share(values[i], prev) if prev is not None else None
        steps.append(
            schemas.FunnelStep(
                step=step.name,
                customers=values[i],
                conversion_from_previous=conv,
                drop_off=None if conv is None else 1 - conv,
                conversion_from_start=_share(values[i], values[0]),
            )
        )
        if conv is not None and (worst is None or 1 - conv > worst.drop_off):
            worst = schemas.DropOff(
                from_step=funnel.steps[i - 1].name,
                to_step=step.name,
                drop_off=1 - conv,
                customers_lost=(prev or 0) - values[i],
            )
    return schemas.FunnelBreakdown(segment=segment, steps=steps, biggest_drop_off=worst)


def funnel_report(
    agg: Aggregate, funnel: Funnel, *, segment: str | None = None
) -> schemas.FunnelReport:
    rows = {key[2]: values for key, values in agg.items() if key[:2] == ("f", funnel.name)}
    wanted = segment or ALL
    main = _breakdown(funnel, rows.get(wanted, ()), wanted)
    by_segment = []
    if segment is None:
        by_segment = [_breakdown(funnel, rows[name], name) for name in sorted(rows) if name != ALL]
    return schemas.FunnelReport(
        funnel=funnel.name,
        description=funnel.description,
        by_segment=by_segment,
        **main.model_dump(),
    )


def funnel_summaries(agg: Aggregate, config: InsightsConfig) -> list[schemas.FunnelSummary]:
    out = []
    for funnel in config.funnels:
        counts = agg.get(("f", funnel.name, ALL), [])
        n = len(funnel.steps)
        out.append(
            schemas.FunnelSummary(
                funnel=funnel.name,
                description=funnel.description,
                steps=[s.name for s in funnel.steps],
                customers_entered=round(counts[0]) if counts else 0,
                customers_completed=round(counts[n - 1]) if len(counts) >= n else 0,
            )
        )
    return out


def _patterns(agg: Aggregate, metric: str) -> dict[frozenset[str], Moments]:
    out: dict[frozenset[str], Moments] = {}
    for key, (n, s, ss) in ((k, v) for k, v in agg.items() if k[:2] == ("d", metric)):
        names = frozenset(p for p in key[2].split("|") if p)
        out[names] = out.get(names, Moments()) + Moments(n, s, ss)
    return out


def drivers_report(
    agg: Aggregate, config: InsightsConfig, *, metric: str, min_observations: int = 2
) -> schemas.DriversReport:
    """OLS of the score on every driver with at least ``min_observations`` answers with it
    and without it; the others are listed as not estimable."""
    patterns = _patterns(agg, metric)
    total = sum(patterns.values(), Moments())
    split: dict[str, tuple[Moments, Moments]] = {}
    for driver in config.drivers:
        with_, without = Moments(), Moments()
        for names, m in patterns.items():
            if driver.name in names:
                with_ = with_ + m
            else:
                without = without + m
        split[driver.name] = (with_, without)
    usable = [
        d.name
        for d in config.drivers
        if split[d.name][0].n >= min_observations and split[d.name][1].n >= min_observations
    ]
    fit = None
    while usable:
        design: dict[tuple[bool, ...], Moments] = {}
        for names, m in patterns.items():
            bits = tuple(name in names for name in usable)
            design[bits] = design.get(bits, Moments()) + m
        fit = ols_from_patterns(usable, design)
        if fit is not None:
            break
        usable.pop()  # collinear (or too few answers): drop the least important configured
    described = {d.name: d.description for d in config.drivers}
    drivers = []
    if fit is not None:
        for coef in fit.coefficients:
            with_, without = split[coef.name]
            raw: Difference = welch(without, with_)
            drivers.append(
                schemas.Driver(
                    rank=0,
                    driver=coef.name,
                    description=described[coef.name],
                    effect=coef.estimate,
                    std_error=coef.std_error,
                    ci_low=coef.ci_low,
                    ci_high=coef.ci_high,
                    p_value=coef.p_value,
                    significant=coef.significant,
                    n_with=int(with_.n),
                    n_without=int(without.n),
                    mean_with=with_.mean,
                    mean_without=without.mean,
                    raw_difference=raw.difference,
                )
            )
    drivers.sort(key=lambda d: (-abs(d.effect), d.driver))
    for i, d in enumerate(drivers, start=1):
        d.rank = i
    estimated = {d.driver for d in drivers}
    return schemas.DriversReport(
        metric=metric,
        observations=int(total.n),
        mean=total.mean,
        baseline=fit.intercept if fit is not None else None,
        residual_sd=fit.residual_sd if fit is not None else None,
        drivers=drivers,
        not_estimable=[d.name for d in config.drivers if d.name not in estimated],
    )


def _experiment_rows(agg: Aggregate, experiment_id: str) -> dict[tuple[str, str], list[float]]:
    """(variant, segment) -> statistics vector."""
    return {
        (key[2], key[3]): values
        for key, values in agg.items()
        if key[0] == "x" and key[1] == experiment_id
    }


def experiment_ids(agg: Aggregate) -> list[str]:
    return sorted({key[1] for key in agg if key[0] == "x"})


def _moments(vec: Sequence[float], at: int) -> Moments:
    return Moments(vec[at], vec[at + 1], vec[at + 2])


def _variant_stats(variant: str, vec: Sequence[float]) -> schemas.VariantStats:
    exposed = vec[EXPOSED]
    nps, csat = _moments(vec, OUTCOME_AT["nps"]), _moments(vec, OUTCOME_AT["csat"])
    return schemas.VariantStats(
        variant=variant,
        exposed=round(exposed),
        converted=round(vec[CONVERTED]),
        conversion_rate=_share(vec[CONVERTED], exposed),
        revenue_per_customer=_share(vec[REVENUE], exposed),
        nps_mean=nps.mean,
        nps_answers=round(nps.n),
        csat_mean=csat.mean,
        csat_answers=round(csat.n),
        churn_risk_mean=_moments(vec, OUTCOME_AT["churn_risk"]).mean,
    )


def _compare(
    variant: str, vec: Sequence[float], base: str, ref: Sequence[float]
) -> list[schemas.Comparison]:
    out = []

    def add(metric: str, diff: Difference, n: float, n0: float) -> None:
        out.append(
            schemas.Comparison(
                metric=metric,
                variant=variant,
                baseline_variant=base,
                baseline_value=diff.baseline,
                value=diff.value,
                difference=diff.difference,
                ci_low=diff.ci_low,
                ci_high=diff.ci_high,
                p_value=diff.p_value,
                significant=diff.significant,
                n=round(n),
                n_baseline=round(n0),
            )
        )

    conv = two_proportions(ref[CONVERTED], ref[EXPOSED], vec[CONVERTED], vec[EXPOSED])
    add("conversion_rate", conv, vec[EXPOSED], ref[EXPOSED])
    rev = welch(
        Moments(ref[EXPOSED], ref[REVENUE], ref[REVENUE_SQ]),
        Moments(vec[EXPOSED], vec[REVENUE], vec[REVENUE_SQ]),
    )
    add("revenue_per_customer", rev, vec[EXPOSED], ref[EXPOSED])
    for name, at in OUTCOME_AT.items():
        m0, m1 = _moments(ref, at), _moments(vec, at)
        add(f"{name}_mean", welch(m0, m1), m1.n, m0.n)
    return out


def pick_baseline(variants: Sequence[str], requested: str | None = None) -> str | None:
    if requested is not None:
        return requested if requested in variants else None
    for name in ("control", "Control", "baseline", "A", "a"):
        if name in variants:
            return name
    return min(variants) if variants else None


def _winner(vectors: Mapping[str, Sequence[float]]) -> str | None:
    if len(vectors) < 2:
        return None
    rates = {v: _share(vec[CONVERTED], vec[EXPOSED]) or 0.0 for v, vec in vectors.items()}
    best = max(sorted(rates), key=lambda v: rates[v])
    top = vectors[best]
    for other, vec in vectors.items():
        if other == best:
            continue
        diff = two_proportions(vec[CONVERTED], vec[EXPOSED], top[CONVERTED], top[EXPOSED])
        if not (diff.significant and (diff.difference or 0) > 0):
            return None
    return best


def experiment_report(
    agg: Aggregate,
    experiment_id: str,
    *,
    window_days: float,
    segment: str | None = None,
    baseline: str | None = None,
) -> schemas.ExperimentReport | None:
    rows = _experiment_rows(agg, experiment_id)
    if not rows:
        return None
    wanted = segment or ALL
    vectors = {
        v: [*vec, *[0.0] * (EXPERIMENT_WIDTH - len(vec))]
        for (v, s), vec in rows.items()
        if s == wanted
    }
    names = sorted(vectors)
    base = pick_baseline(names, baseline)
    comparisons = []
    if base is not None:
        for name in names:
            if name != base:
                comparisons += _compare(name, vectors[name], base, vectors[base])
    return schemas.ExperimentReport(
        experiment_id=experiment_id,
        segment=wanted,
        window_days=window_days,
        baseline_variant=base,
        variants=[_variant_stats(n, vectors[n]) for n in names],
        comparisons=comparisons,
        winner=_winner(vectors),
        segments=sorted({s for (_, s) in rows if s != ALL}),
    )


def experiment_summaries(agg: Aggregate) -> list[schemas.ExperimentSummary]:
    out = []
    for exp_id in experiment_ids(agg):
        vectors = {v: vec for (v, s), vec in _experiment_rows(agg, exp_id).items() if s == ALL}
        out.append(
            schemas.ExperimentSummary(
                experiment_id=exp_id,
                variants=sorted(vectors),
                exposed=round(sum(vec[EXPOSED] for vec in vectors.values())),
                winner=_winner(vectors),
            )
        )
    return out
