"""In-process sentiment for Japanese and English customer text; no network, no model download."""

from cxm_scoring.sentiment.labels import (
    NEGATIVE_THRESHOLD,
    POSITIVE_THRESHOLD,
    Sentiment,
    SentimentLabel,
    label_for,
)
from cxm_scoring.sentiment.language import Language, detect_language
from cxm_scoring.sentiment.service import MAX_CHARS, analyze, warm_up

__all__ = [
    "MAX_CHARS",
    "NEGATIVE_THRESHOLD",
    "POSITIVE_THRESHOLD",
    "Language",
    "Sentiment",
    "SentimentLabel",
    "analyze",
    "detect_language",
    "label_for",
    "warm_up",
]
