"""English polarity from VADER, a lexicon and rule set tuned on short social-media text.

VADER handles negation ("not helpful"), intensifiers and "but" clauses itself. Its analyser
keeps no per-call state, so one shared instance is safe across threads.
"""

import threading

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from cxm_scoring.sentiment.domain_terms import ENGLISH_VALENCES

_build_lock = threading.Lock()
_analyzer: SentimentIntensityAnalyzer | None = None


def _get_analyzer() -> SentimentIntensityAnalyzer:
    global _analyzer
    if _analyzer is None:
        with _build_lock:
            if _analyzer is None:
                analyzer = SentimentIntensityAnalyzer()
                analyzer.lexicon.update(ENGLISH_VALENCES)
                _analyzer = analyzer
    return _analyzer


def warm_up() -> None:
    """Load the lexicon now instead of on the first event."""
    _get_analyzer()


def polarity(text: str) -> float:
    """VADER's normalised compound score, in [-1, 1]."""
    return float(_get_analyzer().polarity_scores(text)["compound"])
