"""Insights API routes on the scoring service (Bearer token, like the profile and alerting
APIs). Every worker answers for the whole base from the merged partition statistics."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from cxm_scoring.insights import report, schemas
from cxm_scoring.insights.agents import InsightsTracker
from cxm_scoring.insights.state import ALL
from cxm_shared.auth import require_token

router = APIRouter(prefix="/v1/insights", tags=["insights"], dependencies=[Depends(require_token)])

Segment = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=128,
        description="a segment name ('rfm:champions', a rule segment); default: every customer",
    ),
]


def _tracker(request: Request) -> InsightsTracker:
    tracker: InsightsTracker | None = request.app.state.insights
    if tracker is None:
        raise HTTPException(503, detail="insights: disabled on this worker (CXM_INSIGHTS_ENABLED)")
    return tracker


def _check_segment(segment: str | None, known: list[str], *, what: str) -> None:
    if segment is not None and segment != ALL and segment not in known:
        raise HTTPException(
            404, detail=f"segment: no {what} customers in segment {segment!r}; known: {known}"
        )


@router.get("/funnels", response_model=list[schemas.FunnelSummary], summary="Funnels")
async def list_funnels(request: Request) -> list[schemas.FunnelSummary]:
    """The configured funnels with how many customers entered and completed each."""
    tracker = _tracker(request)
    return report.funnel_summaries(tracker.view, tracker.config)


@router.get("/funnels/{funnel}", response_model=schemas.FunnelReport, summary="Journey drop-off")
async def get_funnel(
    request: Request,
    funnel: Annotated[str, Path(max_length=64, description="funnel name")],
    segment: Segment = None,
) -> schemas.FunnelReport:
    """Customers reaching each step of a funnel, the drop-off between steps and the biggest
    one, overall (with a breakdown per segment) or for one segment."""
    tracker = _tracker(request)
    found = tracker.config.funnel(funnel)
    if found is None:
        names = [f.name for f in tracker.config.funnels]
        raise HTTPException(404, detail=f"funnel: no funnel {funnel!r}; configured: {names}")
    result = report.funnel_report(tracker.view, found, segment=segment)
    if segment is not None:
        known = [b.segment for b in report.funnel_report(tracker.view, found).by_segment]
        _check_segment(segment, known, what="funnel")
    return result


@router.get("/drivers", response_model=schemas.DriversReport, summary="Key drivers")
async def get_drivers(
    request: Request,
    metric: Annotated[
        Literal["nps", "csat"], Query(description="the score the drivers are ranked for")
    ] = "nps",
    min_observations: Annotated[
        int | None,
        Query(ge=2, le=1_000_000, description="answers needed with and without a driver"),
    ] = None,
) -> schemas.DriversReport:
    """Which touchpoints move the customer's next NPS or CSAT answer, with effect size (score
    points, adjusted for the other drivers), 95% interval, p-value and sample sizes."""
    tracker = _tracker(request)
    need = min_observations or tracker.settings.insights_min_observations
    return report.drivers_report(tracker.view, tracker.config, metric=metric, min_observations=need)


@router.get("/experiments", response_model=schemas.ExperimentList, summary="Experiments")
async def list_experiments(request: Request) -> schemas.ExperimentList:
    """Experiments with exposed customers, their variants and winner (if significant)."""
    return schemas.ExperimentList(experiments=report.experiment_summaries(_tracker(request).view))


@router.get(
    "/experiments/{experiment_id}",
    response_model=schemas.ExperimentReport,
    summary="Experiment comparison",
)
async def get_experiment(
    request: Request,
    experiment_id: Annotated[str, Path(max_length=64)],
    segment: Segment = None,
    baseline: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="variant compared against; default "
            "'control' / 'A' if present, else the first by name",
        ),
    ] = None,
) -> schemas.ExperimentReport:
    """Per-variant outcomes after exposure (conversion, revenue, NPS, CSAT, churn risk) and
    each variant against the baseline: difference, 95% interval, p-value, sample sizes."""
    tracker = _tracker(request)
    window = tracker.config.experiments.window_s / 86_400.0
    overall = report.experiment_report(tracker.view, experiment_id, window_days=window)
    if overall is None:
        raise HTTPException(404, detail=f"experiment_id: no exposures to {experiment_id!r}")
    _check_segment(segment, overall.segments, what="exposed")
    if baseline is not None and baseline not in {v.variant for v in overall.variants}:
        raise HTTPException(400, detail=f"baseline: no variant {baseline!r} in this experiment")
    result = report.experiment_report(
        tracker.view, experiment_id, window_days=window, segment=segment, baseline=baseline
    )
    assert result is not None
    return result
