"""GET /v1/decisions: the content for a customer at a placement (thin: parse, decide, log)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from cxm_profile import metrics
from cxm_profile.decisions import service
from cxm_profile.decisions.exposures import ExposureLog
from cxm_profile.decisions.rules import DecisionRules, decide
from cxm_profile.decisions.schemas import DecisionOut
from cxm_profile.errors import BadRequest
from cxm_profile.identity.identifiers import keyed, parse_identifiers
from cxm_profile.profiles.views import require_token

router = APIRouter(prefix="/v1", tags=["decisions"], dependencies=[Depends(require_token)])

DESCRIPTION = """The content variant to show a customer at a placement (e.g. `home_banner`),
from the configured rules (`CXM_DECISION_RULES_FILE`) and the customer's current segments.

Name the customer by an identifier (`type` + `value`, as in `/v1/profiles/lookup`) or by
`customer_id`. A customer the platform does not know gets the placement's default content
with `customer_id: null`. When a running experiment assigns a variant (sticky per customer:
a hash of the experiment and the live customer id), the decision is logged as an
`experiment_exposure` touchpoint (one per customer, experiment and UTC day), so the
experiment analysis sees who was shown what."""


@router.get(
    "/decisions",
    response_model=DecisionOut,
    summary="Personalisation decision for a customer at a placement",
    description=DESCRIPTION,
)
async def get_decision(
    request: Request,
    placement: Annotated[str, Query(min_length=1, max_length=64, description="placement name")],
    type: Annotated[
        str | None, Query(min_length=1, max_length=64, description="identifier type")
    ] = None,
    value: Annotated[
        str | None, Query(min_length=1, max_length=512, description="identifier value")
    ] = None,
    customer_id: Annotated[
        str | None, Query(min_length=1, max_length=64, description="instead of type/value")
    ] = None,
) -> Response:
    started = time.perf_counter()
    rules: DecisionRules = request.app.state.decision_rules
    if placement not in rules.placements:
        raise BadRequest("placement", f"unknown placement; one of {sorted(rules.placements)}")
    pool = request.app.state.read_pool
    if customer_id is not None:
        if type is not None or value is not None:
            raise BadRequest("customer_id", "give either customer_id or type and value, not both")
        customer = await service.customer_by_id(pool=pool, customer_id=_uuid(customer_id))
    else:
        if type is None:
            raise BadRequest("type", "give type and value, or customer_id")
        if value is None:
            raise BadRequest("value", "required with type")
        settings = request.app.state.settings
        if type not in settings.rules.types:
            raise BadRequest(
                "type", f"unknown identifier type; one of {sorted(settings.rules.types)}"
            )
        parsed = parse_identifiers({type: value}, rules=settings.rules, secret=settings.secret)
        if not parsed.accepted:
            raise BadRequest("value", parsed.ignored[0].reason)
        customer = await service.customer_by_identifier(
            pool=pool, identifier_type=type, key=parsed.accepted[0].key
        )
    known = customer.customer_id if customer else None
    segments = customer.segments if customer else ()
    decision = decide(rules, placement=placement, customer_id=known, segments=segments)
    body: dict[str, Any] = {
        "placement": placement,
        "customer_id": known,
        "segments": list(segments),
        "content": decision.content.as_dict(),
        "source": decision.source,
        "rule": decision.rule,
        "experiment": None,
    }
    if decision.experiment_id is not None and customer is not None:
        exposures: ExposureLog = request.app.state.exposures
        event_id = None
        if customer.lead is not None:
            event_id = exposures.record(
                decision=decision,
                customer_id=customer.customer_id,
                identifiers=keyed(*customer.lead),
                channel=rules.placements[placement].channel,
                at=datetime.now(UTC),
            )
        body["experiment"] = {
            "id": decision.experiment_id,
            "variant": decision.variant,
            "exposure_event_id": event_id,
        }
    metrics.DECISIONS.labels(placement=placement, source=decision.source).inc()
    metrics.DECISION_SECONDS.observe(time.perf_counter() - started)
    return Response(orjson.dumps(body), media_type="application/json")


def _uuid(customer_id: str) -> str:
    try:
        return str(uuid.UUID(customer_id))
    except ValueError:
        raise BadRequest("customer_id", "not a customer id (a UUID)") from None
