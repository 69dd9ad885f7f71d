"""Churn risk 0-1: purchase rhythm (BG/NBD) combined with experience signals.

score = logistic(bias + sum of weight_i * signal_i), every signal scaled to 0..1 where 0 is "no
sign of trouble" and 1 is "as bad as this signal gets", every weight >= 0. So the score is
monotone: making any signal worse never lowers the risk. Each term's weight * signal is its
contribution, and the largest contributions are returned as the reasons.

Signals (all optional; a missing one contributes nothing rather than guessing):

=====================  ======================================================  ======
code                   signal (0..1)                                           weight
=====================  ======================================================  ======
purchase_rhythm        1 - P(alive) from BG/NBD                                 4.0
detractor              latest NPS 0-6: (7 - nps) / 7; 0 for 7-10                2.0
negative_sentiment     recent feedback sentiment s in [-1, 1]: max(0, -s)       1.5
repeated_contacts      most contacts about one problem n: min(1, (n - 1) / 3)   1.5
failed_delivery        recent failed deliveries n: min(1, n / 2)                1.2
high_effort            latest CES c (5 = hardest): max(0, (c - 3) / 2)          1.0
=====================  ======================================================  ======

bias = logit(0.05): a customer with no warning sign scores 0.05. The weights are a documented
starting point, not a trained model; they are a parameter (``ChurnWeights``) so they can be
tuned or fitted against observed churn later. With the defaults, P(alive) = 0 alone gives 0.74,
a detractor score of 0 alone 0.28, and a dead rhythm plus a 0 NPS 0.96.

BG/NBD gives P(alive) = 1 to customers with no repeat purchase; for them only the experience
signals speak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BASELINE_RISK = 0.05
MAX_REASONS = 3


@dataclass(frozen=True, slots=True)
class ChurnWeights:
    purchase_rhythm: float = 4.0
    detractor: float = 2.0
    negative_sentiment: float = 1.5
    repeated_contacts: float = 1.5
    failed_delivery: float = 1.2
    high_effort: float = 1.0
    bias: float = math.log(BASELINE_RISK / (1 - BASELINE_RISK))

    def __post_init__(self) -> None:
        for name in (
            "purchase_rhythm",
            "detractor",
            "negative_sentiment",
            "repeated_contacts",
            "failed_delivery",
            "high_effort",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: weight must be a finite number >= 0, got {value!r}")


DEFAULT_WEIGHTS = ChurnWeights()


@dataclass(frozen=True, slots=True)
class ChurnInputs:
    """The parts of a customer's state that bear on churn (None: unknown)."""

    p_alive: float | None = None
    latest_nps: int | None = None
    sentiment: float | None = None  # recent feedback, -1 (negative) .. 1 (positive)
    max_contacts_same_reason: int = 0  # recent support contacts about the one same problem
    failed_deliveries: int = 0  # recent
    latest_ces: int | None = None


@dataclass(frozen=True, slots=True)
class ChurnReason:
    code: str
    text: str
    contribution: float


@dataclass(frozen=True, slots=True)
class ChurnRisk:
    score: float
    reasons: tuple[ChurnReason, ...]


def _clamp01(v: float) -> float:
    return min(1.0, max(0.0, v))


def _signals(inputs: ChurnInputs) -> list[tuple[str, float]]:
    """(code, signal 0..1) for every signal that is present and non-zero."""
    out: list[tuple[str, float]] = []
    if inputs.p_alive is not None and inputs.p_alive < 1:
        out.append(("purchase_rhythm", 1.0 - _clamp01(inputs.p_alive)))
    if inputs.latest_nps is not None and inputs.latest_nps <= 6:
        out.append(("detractor", _clamp01((7 - inputs.latest_nps) / 7)))
    if inputs.sentiment is not None and inputs.sentiment < 0:
        out.append(("negative_sentiment", _clamp01(-inputs.sentiment)))
    if inputs.max_contacts_same_reason >= 2:
        out.append(("repeated_contacts", _clamp01((inputs.max_contacts_same_reason - 1) / 3)))
    if inputs.failed_deliveries >= 1:
        out.append(("failed_delivery", _clamp01(inputs.failed_deliveries / 2)))
    if inputs.latest_ces is not None and inputs.latest_ces > 3:
        out.append(("high_effort", _clamp01((inputs.latest_ces - 3) / 2)))
    return out


def _reason_text(code: str, inputs: ChurnInputs) -> str:
    # Built only for the reasons returned: formatting is most of the cost otherwise.
    if code == "purchase_rhythm":
        return f"purchase rhythm suggests inactivity (P(alive) {_clamp01(inputs.p_alive or 0):.2f})"
    if code == "detractor":
        return f"latest NPS answer {inputs.latest_nps} (detractor)"
    if code == "negative_sentiment":
        return f"negative feedback sentiment ({inputs.sentiment:.2f})"
    if code == "repeated_contacts":
        return f"contacted support {inputs.max_contacts_same_reason} times about the same problem"
    if code == "failed_delivery":
        n = inputs.failed_deliveries
        return f"{n} failed deliver{'y' if n == 1 else 'ies'}"
    return f"reported high effort (CES {inputs.latest_ces} of 5)"


def churn_risk(*, inputs: ChurnInputs, weights: ChurnWeights = DEFAULT_WEIGHTS) -> ChurnRisk:
    """The risk score and its top reasons (largest contribution first)."""
    contributions = [(getattr(weights, code) * signal, code) for code, signal in _signals(inputs)]
    z = weights.bias + sum(c for c, _ in contributions)
    score = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    top = sorted(((c, code) for c, code in contributions if c > 0), key=lambda t: (-t[0], t[1]))
    reasons = tuple(
        ChurnReason(code=code, text=_reason_text(code, inputs), contribution=c)
        for c, code in top[:MAX_REASONS]
    )
    return ChurnRisk(score=score, reasons=reasons)
