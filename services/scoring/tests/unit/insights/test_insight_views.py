"""The insights routes over a known aggregate: auth, answers, and 4xx that name the field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cxm_scoring.config import ScoringSettings
from cxm_scoring.insights.config import InsightsConfig, load_insights_config
from cxm_scoring.insights.state import (
    Aggregate,
    CustomerInsights,
    apply_event,
    contribution,
    merge_aggregates,
)
from cxm_scoring.insights.views import router
from cxm_shared.events import ResolvedTouchpoint

AUTH = {"Authorization": "Bearer dev-api-token"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeTracker:
    view: Aggregate
    config: InsightsConfig
    settings: ScoringSettings


def event(type_: str, n: int, **props: Any) -> ResolvedTouchpoint:
    return ResolvedTouchpoint(
        event_id=f"e{n}",
        type=type_,
        channel="web",
        touchpoint="product_page" if type_ == "page_view" else None,
        occurred_at=T0 + timedelta(minutes=n),
        received_at=T0,
        source="t",
        identifiers={"user_id": "u"},
        properties=props,
        customer_id="c",
    )


def app_with(tracker: FakeTracker | None) -> FastAPI:
    app = FastAPI()
    app.state.settings = ScoringSettings()
    app.state.insights = tracker
    app.include_router(router)
    return app


@pytest.fixture
def app() -> FastAPI:
    config = load_insights_config()
    states = []
    for i in range(6):
        state = CustomerInsights(segments=["vip"] if i % 2 else [])
        events = [
            event("experiment_exposure", 0, experiment_id="banner", variant="AB"[i % 2]),
            event("page_view", 1),
        ]
        if i % 3 == 0:
            events.append(event("purchase", 2, amount=10.0))
        for e in events:
            apply_event(state, e, config=config)
        states.append(state)
    view = merge_aggregates(contribution(s, config) for s in states)
    return app_with(FakeTracker(view, config, ScoringSettings()))


async def get(app: FastAPI, path: str, **params: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
        return await client.get(path, params=params, headers=AUTH)


async def test_funnel_and_segment(app: FastAPI) -> None:
    body = (await get(app, "/v1/insights/funnels/purchase_journey")).json()
    assert body["steps"][0]["customers"] == 6
    assert [b["segment"] for b in body["by_segment"]] == ["vip"]
    vip = (await get(app, "/v1/insights/funnels/purchase_journey", segment="vip")).json()
    assert vip["steps"][0]["customers"] == 3 and vip["by_segment"] == []


async def test_experiment_report(app: FastAPI) -> None:
    body = (await get(app, "/v1/insights/experiments/banner")).json()
    assert {v["variant"]: (v["exposed"], v["converted"]) for v in body["variants"]} == {
        "A": (3, 1),
        "B": (3, 1),
    }
    assert body["baseline_variant"] == "A" and body["winner"] is None
    listing = (await get(app, "/v1/insights/experiments")).json()
    assert listing["experiments"][0]["exposed"] == 6


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/v1/insights/funnels/nope", {}, 404, "funnel"),
        ("/v1/insights/funnels/purchase_journey", {"segment": "nobody"}, 404, "segment"),
        ("/v1/insights/experiments/nope", {}, 404, "experiment_id"),
        ("/v1/insights/experiments/banner", {"baseline": "Z"}, 400, "baseline"),
        ("/v1/insights/experiments/banner", {"segment": "nobody"}, 404, "segment"),
    ],
)
async def test_bad_requests_name_the_field(
    app: FastAPI, path: str, params: dict, status: int, field: str
) -> None:
    response = await get(app, path, **params)
    assert response.status_code == status
    assert response.json()["detail"].startswith(f"{field}:")


async def test_bad_query_values_are_422_naming_the_parameter(app: FastAPI) -> None:
    response = await get(app, "/v1/insights/drivers", metric="ces")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "metric"]
    response = await get(app, "/v1/insights/drivers", min_observations=1)
    assert response.json()["detail"][0]["loc"] == ["query", "min_observations"]


async def test_token_required() -> None:
    app = app_with(None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
        assert (await client.get("/v1/insights/funnels")).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/v1/insights/funnels", headers=wrong)).status_code == 401


async def test_disabled_insights_answer_503() -> None:
    response = await get(app_with(None), "/v1/insights/drivers")
    assert response.status_code == 503 and response.json()["detail"].startswith("insights:")


def test_openapi_documents_the_responses(app: FastAPI) -> None:
    spec = app.openapi()
    driver = spec["components"]["schemas"]["Driver"]["properties"]
    assert "adjusted for the other drivers" in driver["effect"]["description"]
    assert "/v1/insights/experiments/{experiment_id}" in spec["paths"]
