"""The sentiment of one piece of customer text, and where its label boundaries sit."""

from dataclasses import dataclass
from enum import StrEnum

from cxm_scoring.sentiment.language import Language

# VADER's authors publish +/-0.05 on its compound score as the neutral band. The Japanese
# score is a balance of polar lexicon terms, so the same band means "any imbalance at all";
# one band for both keeps a label comparable across languages on the dashboards.
POSITIVE_THRESHOLD = 0.05
NEGATIVE_THRESHOLD = -0.05


class SentimentLabel(StrEnum):
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"


@dataclass(frozen=True, slots=True)
class Sentiment:
    """score is in [-1, 1]; language is the lexicon that produced it."""

    score: float
    label: SentimentLabel
    language: Language


def label_for(score: float) -> SentimentLabel:
    """Label a score: >= 0.05 positive, <= -0.05 negative, neutral in between."""
    if score >= POSITIVE_THRESHOLD:
        return SentimentLabel.POSITIVE
    if score <= NEGATIVE_THRESHOLD:
        return SentimentLabel.NEGATIVE
    return SentimentLabel.NEUTRAL
