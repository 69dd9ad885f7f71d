"""English polarity from VADER, a lexicon and rule set tuned on short social-media text.

VADER handles negation ("not helpful"), intensifiers and "but" clauses itself, but it reads
a whole text as one sentence: its negation looks back three tokens across full stops, so in
"support never called back. Terrible." the "never" turned "Terrible" positive. Feedback is
therefore scored sentence by sentence, and the text's score is the mean of the sentences
that carry any sentiment (neutral filler does not dilute a complaint). The analyser keeps no
per-call state, so one shared instance is safe across threads.
"""

import re
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


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def polarity(text: str) -> float:
    """Mean of VADER's normalised compound score over the sentences with sentiment, in [-1, 1]."""
    analyzer = _get_analyzer()
    scores = [
        float(analyzer.polarity_scores(sentence)["compound"])
        for sentence in _SENTENCE_END.split(text)
        if sentence.strip()
    ]
    polar = [score for score in scores if score != 0.0]
    return sum(polar) / len(polar) if polar else 0.0
