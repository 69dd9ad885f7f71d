import pytest

from cxm_scoring.sentiment import SentimentLabel, label_for


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (-1.0, SentimentLabel.NEGATIVE),
        (-0.05, SentimentLabel.NEGATIVE),
        (-0.049, SentimentLabel.NEUTRAL),
        (0.0, SentimentLabel.NEUTRAL),
        (0.049, SentimentLabel.NEUTRAL),
        (0.05, SentimentLabel.POSITIVE),
        (1.0, SentimentLabel.POSITIVE),
    ],
)
def test_neutral_band_is_plus_minus_five_hundredths(score: float, expected: SentimentLabel) -> None:
    assert label_for(score) is expected
