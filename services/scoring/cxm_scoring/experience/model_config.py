"""Loading what the scorer needs besides events: BG/NBD parameters and segment rules."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cxm_scoring.domain.bgnbd import BgNbdParams
from cxm_scoring.domain.segments import SegmentRule, compile_segment_rules

log = logging.getLogger(__name__)

# Fallback when no fitted model is configured: the CDNOW estimates of Fader, Hardie & Lee
# (2005), in weeks. A documented, published rhythm is a better default than none; fit the
# platform's own history with `python -m cxm_scoring fit-churn-model` for real use.
DEFAULT_BGNBD = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426, period_days=7.0)

DEFAULT_SEGMENT_RULES: list[dict[str, Any]] = [
    {
        "name": "vip_at_risk",
        "description": "top-20% spenders likely to leave",
        "all": [
            {"field": "decile", "op": "<=", "value": 2},
            {"field": "churn_risk", "op": ">=", "value": 0.6},
        ],
    },
    {
        "name": "unhappy",
        "description": "latest NPS answer is a detractor or rolling sentiment is negative",
        "any": [
            {"field": "nps_latest", "op": "<=", "value": 6},
            {"field": "sentiment", "op": "<=", "value": -0.3},
        ],
    },
    {
        "name": "repeat_problem",
        "description": "three or more recent support contacts about the same problem",
        "when": {"field": "support_contacts_same_reason", "op": ">=", "value": 3},
    },
]


def load_bgnbd(path: str | None) -> BgNbdParams:
    if not path:
        return DEFAULT_BGNBD
    file = Path(path)
    if not file.exists():
        log.warning("churn model file missing, using CDNOW defaults path=%s", path)
        return DEFAULT_BGNBD
    return BgNbdParams.from_json(file.read_text())


def load_segment_rules(path: str | None) -> tuple[SegmentRule, ...]:
    if not path:
        return compile_segment_rules(DEFAULT_SEGMENT_RULES)
    return compile_segment_rules(json.loads(Path(path).read_text()))
