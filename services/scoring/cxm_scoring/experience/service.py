"""How a touchpoint changes one customer's experience state, how two states combine, and what
is published about a state (score snapshot, signals). Pure functions: no Kafka, no clock.

Every read-out is "as of" the newest event time applied (``last_event_at``), never the wall
clock, so replaying the same events gives the same state and the same snapshot.
"""

from __future__ import annotations

import hashlib
from bisect import insort
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxm_scoring.domain import bgnbd
from cxm_scoring.domain.churn import DEFAULT_WEIGHTS, ChurnInputs, ChurnWeights, churn_risk
from cxm_scoring.domain.ctb import ctb_profile, merge_affinities, record_items
from cxm_scoring.domain.decile import DecileCuts, decile_of
from cxm_scoring.domain.errors import InvalidPurchaseError
from cxm_scoring.domain.purchases import merge_purchase_stats, record_purchase, utc_day
from cxm_scoring.domain.rfm import RfmInput, RfmThresholds, rfm_scores, rfm_segment
from cxm_scoring.domain.segments import SegmentRule, evaluate_segments
from cxm_scoring.domain.survey import (
    SurveyResponse,
    lifetime_summary,
    merge_survey_states,
    nps_category,
    record_response,
    window_summary,
)
from cxm_scoring.experience.models import (
    APPLIED_IDS_KEPT,
    CONTACTS_KEPT,
    FAILED_DELIVERIES_KEPT,
    MERGES_KEPT,
    RECENT_WINDOW_S,
    SENTIMENT_KEPT,
    SENTIMENT_WINDOW_S,
    ExperienceState,
)
from cxm_scoring.sentiment import Sentiment, SentimentLabel, analyze
from cxm_shared.events import ResolvedTouchpoint

TEXT_EVENT_TYPES = frozenset({"survey_response", "feedback", "review", "support_contact"})
TEXT_FIELDS = ("comment", "text", "notes", "body")
FAILED_DELIVERY_STATUSES = frozenset({"failed", "delivery_failed", "undeliverable", "lost"})
RFM_PREFIX = "rfm:"


@dataclass(frozen=True, slots=True)
class ScoringModel:
    """Everything a read-out needs besides the state: fitted parameters, base-wide cut points
    (None until the first recomputation), segment rules and signal thresholds."""

    bgnbd: bgnbd.BgNbdParams
    weights: ChurnWeights = DEFAULT_WEIGHTS
    rules: tuple[SegmentRule, ...] = ()
    decile_cuts: DecileCuts | None = None
    rfm_thresholds: RfmThresholds | None = None
    churn_high: float = 0.7
    churn_rising_delta: float = 0.2
    low_csat_max: int = 2
    high_effort_min: int = 4


@dataclass(slots=True)
class Applied:
    """What one event did: the signals to publish and what the in-process metrics need."""

    signals: list[dict[str, Any]] = field(default_factory=list)
    survey: SurveyResponse | None = None
    churn_risk: float | None = None
    sentiment: Sentiment | None = None  # of the event's free text, when it had one
    view: ReadOut | None = None  # the read-out after the event (reused by the snapshot)
    # Delivered below an offset already applied from the same source partition (see
    # ``already_applied``): counted, so a consumer that reorders shows on the dashboards.
    reordered: bool = False


def source_key(kind: str, partition: int) -> str:
    return f"{kind}:{partition}"


def already_applied(
    state: ExperienceState, *, event_id: str, source: str | None, offset: int | None
) -> bool:
    """Whether the event is in the state already: by its id, not by an offset mark. faust can
    deliver a partition out of order around a rebalance (an event prefetched before it
    arrives ahead of earlier ones: faust-streaming issues #221, #236), and a mark would then
    drop every earlier event as a duplicate; the id window (``APPLIED_IDS_KEPT``) covers a
    redelivery, which trails the original by one uncommitted batch."""
    return event_id in state.applied_ids


def _behind_mark(state: ExperienceState, *, source: str | None, offset: int | None) -> bool:
    return source is not None and offset is not None and offset <= state.offsets.get(source, -1)


def _mark_applied(
    state: ExperienceState, *, event_id: str, source: str | None, offset: int | None
) -> None:
    if source is not None and offset is not None:
        state.offsets[source] = max(offset, state.offsets.get(source, -1))
    state.applied_ids.append(event_id)
    if len(state.applied_ids) > APPLIED_IDS_KEPT:
        del state.applied_ids[: len(state.applied_ids) - APPLIED_IDS_KEPT]


def _text_of(properties: Mapping[str, Any]) -> str | None:
    for name in TEXT_FIELDS:
        value = properties.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _trim_recent(items: list[Any], *, at_of: Any, keep: int) -> None:
    """Drop entries older than RECENT_WINDOW_S before the newest, then beyond ``keep``."""
    if not items:
        return
    horizon = at_of(items[-1]) - RECENT_WINDOW_S
    drop = 0
    while drop < len(items) and at_of(items[drop]) < horizon:
        drop += 1
    drop = max(drop, len(items) - keep)
    del items[:drop]


def _trim_sentiment(items: list[list[float]]) -> None:
    if not items:
        return
    horizon = items[-1][0] - SENTIMENT_WINDOW_S
    drop = 0
    while drop < len(items) and items[drop][0] < horizon:
        drop += 1
    del items[: max(drop, len(items) - SENTIMENT_KEPT)]


def _is_failed_delivery(properties: Mapping[str, Any]) -> bool:
    status = properties.get("status")
    return properties.get("failed") is True or (
        isinstance(status, str) and status.lower() in FAILED_DELIVERY_STATUSES
    )


def _signal_id(kind: str, customer_id: str, trigger: str, detail: str = "") -> str:
    digest = hashlib.sha256(f"{kind}|{customer_id}|{trigger}|{detail}".encode()).hexdigest()
    return f"{kind}:{digest[:32]}"


def _signal(
    *,
    kind: str,
    customer_id: str,
    trigger: str,
    at: float,
    severity: str,
    labels: dict[str, str],
    evidence: dict[str, Any],
    detail: str = "",
) -> dict[str, Any]:
    return {
        "signal_id": _signal_id(kind, customer_id, trigger, detail),
        "kind": kind,
        "customer_id": customer_id,
        "occurred_at": at,
        "severity": severity,
        "labels": labels,
        "evidence": evidence,
    }


def apply_touchpoint(
    state: ExperienceState,
    *,
    event: ResolvedTouchpoint,
    model: ScoringModel,
    source: str | None = None,
    offset: int | None = None,
) -> Applied | None:
    """Apply one touchpoint in place; None when it was applied before (nothing changes).

    Raises a ``ScoringDomainError`` (bad scores, amounts, items) before changing anything the
    event's own validation covers, so the caller dead-letters it with the state intact.
    """
    if already_applied(state, event_id=event.event_id, source=source, offset=offset):
        return None
    at = event.occurred_at.timestamp()
    props = event.properties
    labels = {"channel": event.channel, "touchpoint": event.touchpoint or "none"}
    applied = Applied(reordered=_behind_mark(state, source=source, offset=offset))
    sigs = applied.signals
    cid = state.customer_id
    eid = event.event_id

    # Validate everything first: a poison event must not leave half an update behind.
    response = None
    if event.type == "survey_response":
        response = SurveyResponse.checked(
            occurred_at=at, nps=props.get("nps"), csat=props.get("csat"), ces=props.get("ces")
        )
    amount = None
    items: list[Any] = []
    if event.type == "purchase":
        amount = props.get("amount")
        if amount is None:
            raise InvalidPurchaseError("properties.amount: required on a purchase")
        raw_items = props.get("items", [])
        if not isinstance(raw_items, list):
            raise InvalidPurchaseError("properties.items: expected a list")
        items = raw_items
    text = _text_of(props) if event.type in TEXT_EVENT_TYPES else None

    before_segments = set(state.segments)
    previous_risk = state.last_churn_risk

    if response is not None:
        record_response(state.survey, response=response)
        applied.survey = response
        if response.nps is not None and response.nps <= 6:
            sigs.append(
                _signal(
                    kind="detractor",
                    customer_id=cid,
                    trigger=eid,
                    at=at,
                    severity="warning",
                    labels=labels,
                    evidence={"event_ids": [eid], "nps": response.nps},
                )
            )
        if response.csat is not None and response.csat <= model.low_csat_max:
            sigs.append(
                _signal(
                    kind="low_csat",
                    customer_id=cid,
                    trigger=eid,
                    at=at,
                    severity="warning",
                    labels=labels,
                    evidence={"event_ids": [eid], "csat": response.csat},
                )
            )
        if response.ces is not None and response.ces >= model.high_effort_min:
            sigs.append(
                _signal(
                    kind="high_effort",
                    customer_id=cid,
                    trigger=eid,
                    at=at,
                    severity="info",
                    labels=labels,
                    evidence={"event_ids": [eid], "ces": response.ces},
                )
            )
    if amount is not None:
        record_purchase(state.purchases, at=at, amount=amount)
        record_items(state.affinity, items=items, at=at)
    if event.type == "support_contact":
        reason = props.get("reason")
        reason = reason if isinstance(reason, str) and reason.strip() else "unspecified"
        insort(state.contacts, [at, reason[:64]])
        _trim_recent(state.contacts, at_of=lambda c: c[0], keep=CONTACTS_KEPT)
    if event.type == "delivery" and _is_failed_delivery(props):
        insort(state.failed_deliveries, at)
        _trim_recent(state.failed_deliveries, at_of=lambda t: t, keep=FAILED_DELIVERIES_KEPT)
    if text is not None:
        locale = event.context.get("locale")
        sentiment = analyze(text, locale=locale if isinstance(locale, str) else None)
        applied.sentiment = sentiment
        insort(state.sentiment, [at, sentiment.score])
        _trim_sentiment(state.sentiment)
        if sentiment.label is SentimentLabel.NEGATIVE:
            state.last_negative_at = max(at, state.last_negative_at or at)
            # The alert carries the score and the event id, never the text itself.
            sigs.append(
                _signal(
                    kind="negative_feedback",
                    customer_id=cid,
                    trigger=eid,
                    at=at,
                    severity="warning",
                    labels={**labels, "language": sentiment.language.value},
                    evidence={
                        "event_ids": [eid],
                        "event_type": event.type,
                        "sentiment": round(sentiment.score, 4),
                    },
                )
            )

    state.events_applied += 1
    state.last_event_at = at if state.last_event_at is None else max(at, state.last_event_at)
    _mark_applied(state, event_id=eid, source=source, offset=offset)

    view = read_out(state, model=model)
    risk = view.churn_score
    state.last_churn_risk = risk
    applied.churn_risk = risk
    applied.view = view
    evidence = {"event_ids": [eid], "churn_risk": round(risk, 4), "reasons": view.reason_codes}
    if risk >= model.churn_high and (previous_risk is None or previous_risk < model.churn_high):
        sigs.append(
            _signal(
                kind="churn_risk_high",
                customer_id=cid,
                trigger=eid,
                at=at,
                severity="critical",
                labels={**labels, **view.value_labels},
                evidence={**evidence, "previous": previous_risk},
            )
        )
    if previous_risk is not None and risk - previous_risk >= model.churn_rising_delta:
        sigs.append(
            _signal(
                kind="churn_risk_rising",
                customer_id=cid,
                trigger=eid,
                at=at,
                severity="warning",
                labels={**labels, **view.value_labels},
                evidence={**evidence, "previous": round(previous_risk, 4)},
            )
        )
    after_segments = set(view.segments)
    state.segments = sorted(after_segments)
    for kind, names in (
        ("segment_entered", after_segments - before_segments),
        ("segment_exited", before_segments - after_segments),
    ):
        for name in sorted(names):
            sigs.append(
                _signal(
                    kind=kind,
                    customer_id=cid,
                    trigger=eid,
                    at=at,
                    severity="info",
                    labels={**labels, "segment": name},
                    evidence={"event_ids": [eid], "segment": name, "churn_risk": round(risk, 4)},
                    detail=name,
                )
            )
    return applied


@dataclass(frozen=True, slots=True)
class ReadOut:
    """Derived figures of one state as of its newest event."""

    facts: dict[str, Any]
    p_alive: float | None
    churn_score: float
    reasons: list[dict[str, Any]]
    rfm: dict[str, Any]
    decile: int | None
    segments: list[str]

    @property
    def reason_codes(self) -> list[str]:
        return [r["code"] for r in self.reasons]

    @property
    def value_labels(self) -> dict[str, str]:
        return {"decile": str(self.decile)} if self.decile is not None else {}


def _max_contacts_same_reason(state: ExperienceState) -> int:
    if not state.contacts:
        return 0
    return max(Counter(c[1] for c in state.contacts).values())


def _recent_failed(state: ExperienceState, as_of: float) -> int:
    horizon = as_of - RECENT_WINDOW_S
    return sum(1 for t in state.failed_deliveries if t >= horizon)


def rolling_sentiment(state: ExperienceState) -> float | None:
    if not state.sentiment:
        return None
    return sum(s[1] for s in state.sentiment) / len(state.sentiment)


def read_out(state: ExperienceState, *, model: ScoringModel) -> ReadOut:
    as_of = state.last_event_at or 0.0
    stats = state.purchases
    p_alive = None
    summary = bgnbd.summary_from_stats(stats, as_of=as_of, period_days=model.bgnbd.period_days)
    if summary is not None:
        p_alive = bgnbd.p_alive(
            params=model.bgnbd,
            frequency=summary.frequency,
            recency=summary.recency,
            age=summary.age,
        )
    survey = state.survey
    latest_nps = survey.latest_nps.score if survey.latest_nps else None
    latest_ces = survey.latest_ces.score if survey.latest_ces else None
    sentiment = rolling_sentiment(state)
    same_reason = _max_contacts_same_reason(state)
    failed = _recent_failed(state, as_of)
    risk = churn_risk(
        inputs=ChurnInputs(
            p_alive=p_alive,
            latest_nps=latest_nps,
            sentiment=sentiment,
            max_contacts_same_reason=same_reason,
            failed_deliveries=failed,
            latest_ces=latest_ces,
        ),
        weights=model.weights,
    )
    reasons = [
        {"code": r.code, "text": r.text, "contribution": round(r.contribution, 4)}
        for r in risk.reasons
    ]
    decile = None
    rfm: dict[str, Any] = {
        "order_count": stats.order_count,
        "total_amount": round(stats.total_amount, 2),
    }
    days_since = None
    if stats.last_day is not None:
        # Recency against the base's reference day when newer: a quiet customer ages.
        ref = as_of
        if model.rfm_thresholds is not None:
            ref = max(ref, model.rfm_thresholds.computed_at)
        days_since = max(0, utc_day(ref) - stats.last_day)
        rfm["days_since_last_purchase"] = days_since
        if model.decile_cuts is not None:
            decile = decile_of(amount=stats.total_amount, cuts=model.decile_cuts)
        if model.rfm_thresholds is not None and model.rfm_thresholds.base_size:
            scores = rfm_scores(
                value=RfmInput(
                    recency_days=float(days_since),
                    frequency=float(stats.purchase_days),
                    monetary=stats.total_amount,
                ),
                thresholds=model.rfm_thresholds,
            )
            rfm.update(
                recency=scores.recency,
                frequency=scores.frequency,
                monetary=scores.monetary,
                code=scores.code,
                segment=rfm_segment(scores=scores).value,
            )
    ctb = ctb_profile(state.affinity, as_of=as_of, k=1)
    latest_csat = survey.latest_csat.score if survey.latest_csat else None
    life = lifetime_summary(survey)
    facts: dict[str, Any] = {
        "decile": decile,
        "churn_risk": risk.score,
        "p_alive": p_alive,
        "recency_score": rfm.get("recency"),
        "frequency_score": rfm.get("frequency"),
        "monetary_score": rfm.get("monetary"),
        "rfm_segment": rfm.get("segment"),
        "order_count": stats.order_count,
        "total_amount": stats.total_amount,
        "days_since_last_purchase": days_since,
        "nps": life.nps,
        "nps_latest": latest_nps,
        "nps_category": None if latest_nps is None else nps_category(score=latest_nps).value,
        "csat_mean": life.csat_mean,
        "csat_latest": latest_csat,
        "ces_mean": life.ces_mean,
        "ces_latest": latest_ces,
        "sentiment": sentiment,
        "support_contacts_same_reason": same_reason,
        "failed_deliveries": failed,
    }
    for dimension in ("category", "brand", "style", "colour", "size"):
        top = ctb.get(dimension)
        facts[f"top_{dimension}"] = top[0].value if top else None
    segments = sorted(evaluate_segments(rules=model.rules, snapshot=facts))
    if rfm.get("segment"):
        segments.append(RFM_PREFIX + rfm["segment"])
    return ReadOut(
        facts=facts,
        p_alive=p_alive,
        churn_score=risk.score,
        reasons=reasons,
        rfm=rfm,
        decile=decile,
        segments=segments,
    )


def _round(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else round(v, digits)


def score_snapshot(
    state: ExperienceState, *, model: ScoringModel, view: ReadOut | None = None
) -> dict[str, Any]:
    """The ``ScoreSnapshot`` of a state, as the JSON dict published on the scores topic.

    ``view``: the state's read-out under ``model`` when the caller has it already (the one
    ``apply_touchpoint`` computed for the state's last event), so it is not computed twice.
    """
    as_of = state.last_event_at or 0.0
    if view is None:
        view = read_out(state, model=model)
    survey = state.survey
    life = lifetime_summary(survey)
    window = window_summary(survey, as_of=as_of)

    def latest(s: Any) -> dict[str, Any] | None:
        return None if s is None else {"score": s.score, "occurred_at": s.occurred_at}

    ctb = ctb_profile(state.affinity, as_of=as_of, k=3)
    return {
        "schema_version": 1,
        "customer_id": state.customer_id,
        "updated_at": as_of,
        "events_applied": state.events_applied,
        "nps": {
            "latest": latest(survey.latest_nps),
            "lifetime": _round(life.nps, 2),
            "responses": life.nps_responses,
            "trailing_90d": _round(window.nps, 2),
            "trailing_responses": window.nps_responses,
        },
        "csat": {
            "latest": latest(survey.latest_csat),
            "mean": _round(life.csat_mean),
            "top2_share": _round(life.csat_top2_share),
            "responses": life.csat_responses,
            "trailing_mean": _round(window.csat_mean),
            "trailing_top2_share": _round(window.csat_top2_share),
        },
        "ces": {
            "latest": latest(survey.latest_ces),
            "mean": _round(life.ces_mean),
            "high_effort_share": _round(life.ces_high_effort_share),
            "responses": life.ces_responses,
            "trailing_mean": _round(window.ces_mean),
        },
        "sentiment": {
            "rolling": _round(rolling_sentiment(state)),
            "samples": len(state.sentiment),
            "last_negative_at": state.last_negative_at,
        },
        "rfm": {**view.rfm, "p_alive": _round(view.p_alive)},
        "decile": view.decile,
        "ctb": {
            d: [{"value": a.value, "share": round(a.share, 4)} for a in affs]
            for d, affs in ctb.items()
        },
        "churn_risk": round(view.churn_score, 4),
        "churn_reasons": view.reasons,
        "segments": view.segments,
    }


def merge_states(winner: ExperienceState, loser: ExperienceState) -> ExperienceState:
    """The state of ``winner`` after absorbing ``loser`` (a new object; inputs untouched).

    Aggregates add, timelines interleave by time, idempotency marks are united (per source the
    higher offset; the applied ids newest last, trimmed to the bound).
    """
    sentiment = sorted([*winner.sentiment, *loser.sentiment])
    _trim_sentiment(sentiment)
    contacts = sorted([*winner.contacts, *loser.contacts])
    _trim_recent(contacts, at_of=lambda c: c[0], keep=CONTACTS_KEPT)
    failed = sorted([*winner.failed_deliveries, *loser.failed_deliveries])
    _trim_recent(failed, at_of=lambda t: t, keep=FAILED_DELIVERIES_KEPT)
    offsets = dict(winner.offsets)
    for k, v in loser.offsets.items():
        offsets[k] = max(v, offsets.get(k, -1))
    ids = [i for i in loser.applied_ids if i not in set(winner.applied_ids)]
    applied_ids = (ids + winner.applied_ids)[-APPLIED_IDS_KEPT:]
    negatives = [t for t in (winner.last_negative_at, loser.last_negative_at) if t is not None]
    times = [t for t in (winner.last_event_at, loser.last_event_at) if t is not None]
    return ExperienceState(
        customer_id=winner.customer_id,
        survey=merge_survey_states(winner.survey, loser.survey),
        purchases=merge_purchase_stats(winner.purchases, loser.purchases),
        affinity=merge_affinities(winner.affinity, loser.affinity),
        sentiment=sentiment,
        last_negative_at=max(negatives) if negatives else None,
        contacts=contacts,
        failed_deliveries=failed,
        last_churn_risk=winner.last_churn_risk,
        segments=list(winner.segments),
        events_applied=winner.events_applied + loser.events_applied,
        last_event_at=max(times) if times else None,
        applied_ids=applied_ids,
        offsets=offsets,
        merged_from=[*winner.merged_from, *loser.merged_from][-MERGES_KEPT:],
        partition=winner.partition,
    )


def base_row(state: ExperienceState) -> tuple[float, int, int] | None:
    """(monetary, frequency, last purchase day) of a purchasing customer, for base statistics."""
    stats = state.purchases
    if stats.last_day is None or stats.total_amount <= 0:
        return None
    return (stats.total_amount, stats.purchase_days, stats.last_day)
