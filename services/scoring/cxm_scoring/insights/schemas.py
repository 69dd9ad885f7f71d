"""Response models of the insights API (documented in the scoring service's OpenAPI)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FunnelStep(BaseModel):
    step: str = Field(description="step name from the funnel configuration")
    customers: int = Field(description="customers who completed this step (and every one before)")
    conversion_from_previous: float | None = Field(
        description="share of the previous step's customers who reached this one (0-1)"
    )
    drop_off: float | None = Field(
        description="share of the previous step's customers who did not reach this one (0-1)"
    )
    conversion_from_start: float | None = Field(
        description="share of the first step's customers who reached this one (0-1)"
    )


class DropOff(BaseModel):
    from_step: str
    to_step: str
    drop_off: float = Field(description="share of from_step's customers lost before to_step")
    customers_lost: int


class FunnelBreakdown(BaseModel):
    segment: str = Field(description="'all' or a segment name (RFM 'rfm:<name>' or a rule)")
    steps: list[FunnelStep]
    biggest_drop_off: DropOff | None = Field(
        description="the transition that loses the largest share of customers"
    )


class FunnelReport(FunnelBreakdown):
    funnel: str
    description: str
    by_segment: list[FunnelBreakdown] = Field(
        default_factory=list,
        description="the same funnel per segment (customers counted in each of their current "
        "segments); empty when a segment was requested",
    )


class FunnelSummary(BaseModel):
    funnel: str
    description: str
    steps: list[str]
    customers_entered: int = Field(description="customers who completed the first step")
    customers_completed: int = Field(description="customers who completed every step")


class Driver(BaseModel):
    rank: int = Field(description="1 = the largest absolute effect")
    driver: str
    description: str
    effect: float = Field(
        description="change of the next score when the driver happened since the previous "
        "survey answer, adjusted for the other drivers (OLS coefficient, score points)"
    )
    std_error: float
    ci_low: float = Field(description="95% confidence interval, lower bound")
    ci_high: float = Field(description="95% confidence interval, upper bound")
    p_value: float = Field(description="two-sided, H0: no effect")
    significant: bool = Field(description="p_value < 0.05")
    n_with: int = Field(description="survey answers preceded by the driver")
    n_without: int = Field(description="survey answers not preceded by it")
    mean_with: float | None
    mean_without: float | None
    raw_difference: float | None = Field(
        description="mean_with - mean_without, unadjusted (Welch), for comparison"
    )


class DriversReport(BaseModel):
    metric: str = Field(description="nps (0-10) or csat (1-5)")
    observations: int = Field(description="survey answers analysed")
    mean: float | None = Field(description="mean score over all observations")
    baseline: float | None = Field(description="model intercept: the mean with no driver")
    residual_sd: float | None
    drivers: list[Driver] = Field(description="ranked by absolute effect")
    not_estimable: list[str] = Field(
        description="configured drivers seen too rarely (or always) to estimate"
    )


class VariantStats(BaseModel):
    variant: str
    exposed: int = Field(description="customers whose first exposure was to this variant")
    converted: int = Field(description="of them, customers who purchased within the window")
    conversion_rate: float | None
    revenue_per_customer: float | None = Field(
        description="purchase amount within the window per exposed customer"
    )
    nps_mean: float | None = Field(description="mean first NPS answer after exposure")
    nps_answers: int
    csat_mean: float | None = Field(description="mean first CSAT answer after exposure")
    csat_answers: int
    churn_risk_mean: float | None = Field(description="mean latest churn risk within the window")


class Comparison(BaseModel):
    metric: str = Field(
        description="conversion_rate, revenue_per_customer, nps_mean, csat_mean, churn_risk_mean"
    )
    variant: str
    baseline_variant: str
    baseline_value: float | None
    value: float | None
    difference: float | None = Field(description="variant - baseline")
    ci_low: float | None = Field(description="95% confidence interval of the difference")
    ci_high: float | None
    p_value: float | None = Field(
        description="two-sided: two-proportion z test (conversion) or Welch t (means)"
    )
    significant: bool
    n: int = Field(description="observations behind the variant's value")
    n_baseline: int


class ExperimentReport(BaseModel):
    experiment_id: str
    segment: str = Field(description="'all' or the segment requested (segments at exposure)")
    window_days: float
    baseline_variant: str | None
    variants: list[VariantStats]
    comparisons: list[Comparison]
    winner: str | None = Field(
        description="the variant with the highest conversion rate significantly above every "
        "other variant's, if any"
    )
    segments: list[str] = Field(description="segments with exposed customers (for ?segment=)")


class ExperimentSummary(BaseModel):
    experiment_id: str
    variants: list[str]
    exposed: int
    winner: str | None


class ExperimentList(BaseModel):
    experiments: list[ExperimentSummary]
