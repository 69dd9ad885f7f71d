"""Sentiment of free-text feedback, reviews and support notes, in Japanese or English."""

from cxm_scoring.sentiment import english, japanese
from cxm_scoring.sentiment.labels import Sentiment, label_for
from cxm_scoring.sentiment.language import Language, detect_language

# Sentiment is read from the opening of a long support transcript; the cap bounds the time
# one event can hold a stream partition (about 5 ms at the measured Japanese rate).
MAX_CHARS = 5_000


def analyze(text: str, *, locale: str | None = None) -> Sentiment:
    """Score `text` in [-1, 1] and label it; `locale` (e.g. "ja-JP") breaks script ties.

    Never logs or keeps the text: feedback is personal data.
    """
    language = detect_language(text, locale=locale)
    excerpt = text[:MAX_CHARS]
    if not excerpt.strip():
        score = 0.0
    elif language is Language.JAPANESE:
        score = japanese.polarity(excerpt)
    else:
        score = english.polarity(excerpt)
    return Sentiment(score=score, label=label_for(score), language=language)


def warm_up() -> None:
    """Build both analysers at worker start so the first feedback event is not slow."""
    japanese.warm_up()
    english.warm_up()
