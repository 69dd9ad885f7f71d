import pytest

from cxm_scoring.sentiment import Language, detect_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("配送が遅れました。", Language.JAPANESE),
        ("ｻｰﾋﾞｽ最高", Language.JAPANESE),  # half-width katakana from older POS terminals
        ("The parcel arrived late.", Language.ENGLISH),
        ("商品はgoodでした", Language.JAPANESE),
        ("I love the 抹茶 latte they sell at the counter", Language.ENGLISH),
        ("Le café était excellent", Language.ENGLISH),  # other Latin scripts use VADER
    ],
)
def test_script_decides_the_language(text: str, expected: Language) -> None:
    assert detect_language(text, locale=None) is expected


def test_script_wins_over_a_contradicting_locale() -> None:
    assert detect_language("The staff were rude.", locale="ja-JP") is Language.ENGLISH
    assert detect_language("店員が失礼でした。", locale="en-US") is Language.JAPANESE


@pytest.mark.parametrize("locale", ["ja-JP", "ja_JP", "JA", "ja"])
def test_locale_decides_when_the_script_cannot(locale: str) -> None:
    assert detect_language("👍 5/5 !!", locale=locale) is Language.JAPANESE


@pytest.mark.parametrize("locale", [None, "", "en-GB", "jav-ID"])
def test_english_is_the_fallback_without_a_japanese_locale(locale: str | None) -> None:
    assert detect_language("12345", locale=locale) is Language.ENGLISH
