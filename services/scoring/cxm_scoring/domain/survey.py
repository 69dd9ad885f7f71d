"""Survey metrics: NPS, CSAT and CES, lifetime aggregates plus a trailing window per customer.

Definitions (from the source material):

- NPS, 0-10 "how likely to recommend": promoters 9-10, passives 7-8, detractors 0-6;
  NPS = % promoters - % detractors, so it runs from -100 to +100.
- CSAT, 1-5: the mean and the top-2-box share (share of answers that are 4 or 5).
- CES, 1-5 with 5 the most effort: the mean and the high-effort share (answers 4 or 5).

The lifetime aggregates are counts and sums, so an update is O(1) and two customers' aggregates
merge by adding (exactly associative and commutative: integers only).

The trailing window keeps the responses of the last ``WINDOW_DAYS`` (90) days, at most
``WINDOW_MAX_RESPONSES`` (50) of them, newest first kept. A time window rather than "last N"
because a CX team reads "NPS this quarter"; the cap bounds the state of a customer who answers
every day. The window is cut relative to the newest response seen, and the read-out is cut
again relative to ``as_of``, so a customer who stopped answering drifts out of the window
without needing an event. The window's aggregates are kept in step with it, so reading it out
is O(1) in the usual case.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cxm_scoring.domain.errors import InvalidScoreError

WINDOW_DAYS = 90
WINDOW_MAX_RESPONSES = 50
_DAY_S = 86_400.0
WINDOW_S = WINDOW_DAYS * _DAY_S


class NpsCategory(StrEnum):
    PROMOTER = "promoter"
    PASSIVE = "passive"
    DETRACTOR = "detractor"


def _check_int_score(*, name: str, score: object, low: int, high: int) -> int:
    # bool is an int subclass; `True` as an NPS answer is a client bug, not a 1.
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise InvalidScoreError(f"{name}: expected an integer {low}-{high}, got {score!r}")
    if score != int(score) or not low <= score <= high:
        raise InvalidScoreError(f"{name}: expected an integer {low}-{high}, got {score!r}")
    return int(score)


def check_nps(score: object) -> int:
    """The answer as an int, or ``InvalidScoreError`` when it is not an integer 0-10."""
    return _check_int_score(name="nps", score=score, low=0, high=10)


def check_csat(score: object) -> int:
    return _check_int_score(name="csat", score=score, low=1, high=5)


def check_ces(score: object) -> int:
    return _check_int_score(name="ces", score=score, low=1, high=5)


def nps_category(*, score: int) -> NpsCategory:
    score = check_nps(score)
    if score >= 9:
        return NpsCategory.PROMOTER
    if score >= 7:
        return NpsCategory.PASSIVE
    return NpsCategory.DETRACTOR


def is_detractor(*, score: int) -> bool:
    return nps_category(score=score) is NpsCategory.DETRACTOR


def is_csat_top2(*, score: int) -> bool:
    return check_csat(score) >= 4


def is_high_effort(*, score: int) -> bool:
    return check_ces(score) >= 4


@dataclass(slots=True)
class NpsAggregate:
    promoters: int = 0
    passives: int = 0
    detractors: int = 0

    def add(self, score: int) -> None:
        self.tally(check_nps(score), 1)

    def tally(self, score: int, step: int) -> None:
        """Count (step 1) or uncount (step -1) an already validated answer."""
        if score >= 9:
            self.promoters += step
        elif score >= 7:
            self.passives += step
        else:
            self.detractors += step

    def merged(self, other: NpsAggregate) -> NpsAggregate:
        return NpsAggregate(
            promoters=self.promoters + other.promoters,
            passives=self.passives + other.passives,
            detractors=self.detractors + other.detractors,
        )

    @property
    def count(self) -> int:
        return self.promoters + self.passives + self.detractors

    @property
    def nps(self) -> float | None:
        """-100..100, or None before the first answer (0 would claim a neutral customer)."""
        if not self.count:
            return None
        return 100.0 * (self.promoters - self.detractors) / self.count


@dataclass(slots=True)
class CsatAggregate:
    count: int = 0
    total: int = 0
    top2: int = 0

    def add(self, score: int) -> None:
        self.tally(check_csat(score), 1)

    def tally(self, score: int, step: int) -> None:
        self.count += step
        self.total += step * score
        if score >= 4:
            self.top2 += step

    def merged(self, other: CsatAggregate) -> CsatAggregate:
        return CsatAggregate(
            count=self.count + other.count,
            total=self.total + other.total,
            top2=self.top2 + other.top2,
        )

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def top2_share(self) -> float | None:
        """Share (0-1) of answers that are 4 or 5."""
        return self.top2 / self.count if self.count else None


@dataclass(slots=True)
class CesAggregate:
    count: int = 0
    total: int = 0
    high_effort: int = 0

    def add(self, score: int) -> None:
        self.tally(check_ces(score), 1)

    def tally(self, score: int, step: int) -> None:
        self.count += step
        self.total += step * score
        if score >= 4:
            self.high_effort += step

    def merged(self, other: CesAggregate) -> CesAggregate:
        return CesAggregate(
            count=self.count + other.count,
            total=self.total + other.total,
            high_effort=self.high_effort + other.high_effort,
        )

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def high_effort_share(self) -> float | None:
        """Share (0-1) of answers that are 4 or 5 (5 = most effort)."""
        return self.high_effort / self.count if self.count else None


@dataclass(frozen=True, slots=True, order=True)
class SurveyResponse:
    """One survey answer set; any of the three scores may be absent.

    Ordered by time first, so a sorted list of responses is a timeline; the scores break ties
    so that merging two windows gives the same result in either order.
    """

    occurred_at: float
    nps: int | None = None
    csat: int | None = None
    ces: int | None = None

    @classmethod
    def checked(
        cls,
        *,
        occurred_at: float,
        nps: object = None,
        csat: object = None,
        ces: object = None,
    ) -> SurveyResponse:
        """A response from untrusted properties: scores validated, at least one present."""
        if nps is None and csat is None and ces is None:
            raise InvalidScoreError("survey_response: carries none of nps, csat, ces")
        return cls(
            occurred_at=float(occurred_at),
            nps=None if nps is None else check_nps(nps),
            csat=None if csat is None else check_csat(csat),
            ces=None if ces is None else check_ces(ces),
        )

    def timeline_key(self) -> tuple[float, int, int, int]:
        return (
            self.occurred_at,
            -1 if self.nps is None else self.nps,
            -1 if self.csat is None else self.csat,
            -1 if self.ces is None else self.ces,
        )


@dataclass(frozen=True, slots=True)
class LatestScore:
    """The most recent answer on one scale (by ``occurred_at``, not arrival)."""

    score: int
    occurred_at: float

    def newer(self, other: LatestScore | None) -> LatestScore:
        if other is None:
            return self
        # Ties broken by the score so that merging is order-independent.
        return max(self, other, key=lambda s: (s.occurred_at, s.score))


@dataclass(slots=True)
class WindowTotals:
    """Aggregates of the responses currently in the window, kept in step with it so that a
    read-out is O(1) instead of a pass over the window."""

    nps: NpsAggregate = field(default_factory=NpsAggregate)
    csat: CsatAggregate = field(default_factory=CsatAggregate)
    ces: CesAggregate = field(default_factory=CesAggregate)

    def tally(self, response: SurveyResponse, step: int) -> None:
        if response.nps is not None:
            self.nps.tally(response.nps, step)
        if response.csat is not None:
            self.csat.tally(response.csat, step)
        if response.ces is not None:
            self.ces.tally(response.ces, step)

    def copy(self) -> WindowTotals:
        return WindowTotals(
            nps=NpsAggregate(self.nps.promoters, self.nps.passives, self.nps.detractors),
            csat=CsatAggregate(self.csat.count, self.csat.total, self.csat.top2),
            ces=CesAggregate(self.ces.count, self.ces.total, self.ces.high_effort),
        )

    @classmethod
    def of(cls, responses: Iterable[SurveyResponse]) -> WindowTotals:
        totals = cls()
        for r in responses:
            totals.tally(r, 1)
        return totals


@dataclass(slots=True)
class SurveyState:
    """Everything the scorer keeps about one customer's survey answers."""

    nps: NpsAggregate = field(default_factory=NpsAggregate)
    csat: CsatAggregate = field(default_factory=CsatAggregate)
    ces: CesAggregate = field(default_factory=CesAggregate)
    latest_nps: LatestScore | None = None
    latest_csat: LatestScore | None = None
    latest_ces: LatestScore | None = None
    # Ascending by time; bounded by WINDOW_S and WINDOW_MAX_RESPONSES.
    window: list[SurveyResponse] = field(default_factory=list)
    # Derived from `window`; not serialised.
    window_totals: WindowTotals = field(default_factory=WindowTotals)

    def to_dict(self) -> dict[str, Any]:
        def latest(s: LatestScore | None) -> list[float] | None:
            return None if s is None else [s.score, s.occurred_at]

        return {
            "nps": [self.nps.promoters, self.nps.passives, self.nps.detractors],
            "csat": [self.csat.count, self.csat.total, self.csat.top2],
            "ces": [self.ces.count, self.ces.total, self.ces.high_effort],
            "latest_nps": latest(self.latest_nps),
            "latest_csat": latest(self.latest_csat),
            "latest_ces": latest(self.latest_ces),
            "window": [[r.occurred_at, r.nps, r.csat, r.ces] for r in self.window],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SurveyState:
        def latest(v: list[float] | None) -> LatestScore | None:
            return None if v is None else LatestScore(score=int(v[0]), occurred_at=float(v[1]))

        window = [SurveyResponse(float(w[0]), w[1], w[2], w[3]) for w in data["window"]]
        return cls(
            nps=NpsAggregate(*data["nps"]),
            csat=CsatAggregate(*data["csat"]),
            ces=CesAggregate(*data["ces"]),
            latest_nps=latest(data["latest_nps"]),
            latest_csat=latest(data["latest_csat"]),
            latest_ces=latest(data["latest_ces"]),
            window=window,
            window_totals=WindowTotals.of(window),
        )


def _responses_to_drop(window: list[SurveyResponse]) -> int:
    """How many of the oldest responses fall out: older than the window, measured from the
    newest response, or beyond the cap."""
    if not window:
        return 0
    horizon = window[-1].occurred_at - WINDOW_S
    drop = 0
    while drop < len(window) and window[drop].occurred_at < horizon:
        drop += 1
    return max(drop, len(window) - WINDOW_MAX_RESPONSES)


def _newer(at: float, score: int, latest: LatestScore | None) -> LatestScore:
    if latest is None or (at, score) > (latest.occurred_at, latest.score):
        return LatestScore(score=score, occurred_at=at)
    return latest


def record_response(state: SurveyState, *, response: SurveyResponse) -> None:
    """Add one response to the customer's state, in place.

    Scores are checked before anything changes, so a bad response leaves the state untouched.
    """
    nps, csat, ces, at = response.nps, response.csat, response.ces, response.occurred_at
    if nps is not None:
        check_nps(nps)
    if csat is not None:
        check_csat(csat)
    if ces is not None:
        check_ces(ces)
    if nps is not None:
        state.nps.tally(nps, 1)
        state.latest_nps = _newer(at, nps, state.latest_nps)
    if csat is not None:
        state.csat.tally(csat, 1)
        state.latest_csat = _newer(at, csat, state.latest_csat)
    if ces is not None:
        state.ces.tally(ces, 1)
        state.latest_ces = _newer(at, ces, state.latest_ces)
    window = state.window
    if not window or response.timeline_key() >= window[-1].timeline_key():
        window.append(response)  # the usual in-order arrival
    else:
        insort(window, response, key=SurveyResponse.timeline_key)
    state.window_totals.tally(response, 1)
    drop = _responses_to_drop(window)
    for old in window[:drop]:
        state.window_totals.tally(old, -1)
    del window[:drop]


def merge_survey_states(a: SurveyState, b: SurveyState) -> SurveyState:
    """The state of the customer formed by merging two customers (a new object)."""

    def newest(x: LatestScore | None, y: LatestScore | None) -> LatestScore | None:
        return y if x is None else x.newer(y)

    window = sorted([*a.window, *b.window], key=SurveyResponse.timeline_key)
    del window[: _responses_to_drop(window)]
    return SurveyState(
        nps=a.nps.merged(b.nps),
        csat=a.csat.merged(b.csat),
        ces=a.ces.merged(b.ces),
        latest_nps=newest(a.latest_nps, b.latest_nps),
        latest_csat=newest(a.latest_csat, b.latest_csat),
        latest_ces=newest(a.latest_ces, b.latest_ces),
        window=window,
        window_totals=WindowTotals.of(window),
    )


@dataclass(frozen=True, slots=True)
class SurveySummary:
    """Read-out of one aggregate set (lifetime or the trailing window)."""

    nps: float | None
    nps_responses: int
    csat_mean: float | None
    csat_top2_share: float | None
    csat_responses: int
    ces_mean: float | None
    ces_high_effort_share: float | None
    ces_responses: int


def _summary(nps: NpsAggregate, csat: CsatAggregate, ces: CesAggregate) -> SurveySummary:
    return SurveySummary(
        nps=nps.nps,
        nps_responses=nps.count,
        csat_mean=csat.mean,
        csat_top2_share=csat.top2_share,
        csat_responses=csat.count,
        ces_mean=ces.mean,
        ces_high_effort_share=ces.high_effort_share,
        ces_responses=ces.count,
    )


def lifetime_summary(state: SurveyState) -> SurveySummary:
    return _summary(state.nps, state.csat, state.ces)


def window_summary(state: SurveyState, *, as_of: float) -> SurveySummary:
    """The trailing-window metrics as seen at ``as_of`` (responses in [as_of - 90 d, as_of])."""
    window = state.window
    horizon = as_of - WINDOW_S
    if not window or (window[0].occurred_at >= horizon and window[-1].occurred_at <= as_of):
        totals = state.window_totals  # the usual case: nothing to exclude
    else:
        # Uncount what lies outside [horizon, as_of]: O(excluded), not O(window).
        totals = state.window_totals.copy()
        start = 0
        while start < len(window) and window[start].occurred_at < horizon:
            totals.tally(window[start], -1)
            start += 1
        end = len(window)
        while end > start and window[end - 1].occurred_at > as_of:
            end -= 1
            totals.tally(window[end], -1)
    return _summary(totals.nps, totals.csat, totals.ces)
