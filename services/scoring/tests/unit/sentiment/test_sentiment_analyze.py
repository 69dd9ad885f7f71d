from concurrent.futures import ThreadPoolExecutor

import pytest

from cxm_scoring.sentiment import MAX_CHARS, Language, SentimentLabel, analyze

NEG, NEU, POS = SentimentLabel.NEGATIVE, SentimentLabel.NEUTRAL, SentimentLabel.POSITIVE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("この商品は良いです。", POS),
        ("この商品は良くない。", NEG),
        # Conjugated negatives oseti alone leaves un-negated.
        ("対応は良くなかったです。", NEG),
        ("残念ながら満足できませんでした。", NEG),
        ("特に問題ありません。", POS),
        ("特に問題なく使えています。", POS),
        # The explanatory 〜んです is not a negation.
        ("届いた商品が壊れていたんです。", NEG),
        # CX words added to the lexicon.
        ("店員の態度がひどかった。", NEG),
        ("アプリが使いやすいです。", POS),
        ("電話で30分も待たされました。", NEG),
    ],
)
def test_japanese_polarity_and_negation(text: str, expected: SentimentLabel) -> None:
    result = analyze(text, locale="ja-JP")
    assert result.language is Language.JAPANESE
    assert result.label is expected


@pytest.mark.parametrize(
    "text",
    [
        # Angry customers plain oseti read as happy or neutral (see japanese.py):
        "不良品",  # 不 + 良品 (a positive noun)
        "また不良品でした。",
        "配達が三日も遅れて、連絡もありませんでした。",  # ありません flipped 遅れる
        "待ち時間が長すぎて、結局つながりませんでした。",  # ...and 待ち時間
        "アプリがすぐに落ちて使い物にならない。",  # ...and 落ちる
        "二度と買いません。",
        "品質がひどいです。",  # 品質 was a positive term
        "配達が三日も遅れて、連絡もありませんでした。本当に最悪です。",
    ],
)
def test_japanese_complaints_read_negative(text: str) -> None:
    assert analyze(text, locale="ja-JP").label is NEG


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A negation reaches back within its clause only...
        ("配達が遅れて、連絡もありませんでした。", NEG),
        ("問題は解決していません。", NEG),
        # ...and an expected service that is not negated is no opinion.
        ("担当者から連絡がありました。", NEU),
        # A strong negative outweighs two ordinary positives.
        ("店員は親切で丁寧でしたが、最悪の体験でした。", NEG),
        ("店員は親切で丁寧でした。", POS),
        ("電話がすぐにつながりました。", POS),
        ("もう二度と利用しないと思います。", NEG),
    ],
)
def test_japanese_clause_rules(text: str, expected: SentimentLabel) -> None:
    assert analyze(text, locale="ja-JP").label is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The staff were really helpful.", POS),
        ("The staff were not helpful at all.", NEG),
        ("My parcel arrived three days late.", NEG),
        ("Checkout went smoothly.", POS),
        ("Please send the invoice to my credit card address.", NEU),
    ],
)
def test_english_polarity(text: str, expected: SentimentLabel) -> None:
    result = analyze(text, locale="en-US")
    assert result.language is Language.ENGLISH
    assert result.label is expected


@pytest.mark.parametrize(
    "text",
    [
        "最悪です。二度と使いません。",
        "最高でした！",
        "Worst service ever!!!",
        "Absolutely amazing :)",
    ],
)
def test_score_stays_in_unit_interval(text: str) -> None:
    assert -1.0 <= analyze(text).score <= 1.0


@pytest.mark.parametrize("text", ["", "   \n", "。。。"])
def test_text_without_words_is_neutral(text: str) -> None:
    result = analyze(text, locale="ja-JP")
    assert (result.score, result.label) == (0.0, NEU)


def test_only_the_first_max_chars_are_read() -> None:
    filler = "注文番号を記載しています。"
    padding = filler * (MAX_CHARS // len(filler) + 1)
    assert analyze(padding + "対応が最悪でした。").label is NEU
    assert analyze("対応が最悪でした。" + padding).label is NEG


def test_concurrent_calls_agree_with_sequential_ones() -> None:
    texts = [
        "配送が遅れて最悪でした。",
        "スタッフがとても親切でした。",
        "The hotline kept me waiting and nobody helped.",
        "Great service, thank you!",
    ] * 10
    sequential = [analyze(text) for text in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(analyze, texts))
    assert concurrent == sequential


def test_english_negation_does_not_cross_a_full_stop() -> None:
    # VADER alone reads "never called back. Terrible." as negated praise (+0.41).
    from cxm_scoring.sentiment import SentimentLabel, analyze

    text = "The delivery was late again and support never called back. Terrible."
    assert analyze(text, locale="en-US").label is SentimentLabel.NEGATIVE
