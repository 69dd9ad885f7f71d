"""Which lexicon a text needs, decided from its script, with the event locale as tie-breaker."""

from enum import StrEnum


class Language(StrEnum):
    JAPANESE = "ja"
    ENGLISH = "en"


# A Japanese character carries roughly what three Latin letters do (a Japanese word is about
# two characters, an English one about five letters), so a product name such as "抹茶" in an
# English review does not pull the review into the Japanese lexicon, nor "good" in a Japanese one.
_JAPANESE_CHAR_WEIGHT = 3


def _is_japanese(char: str) -> bool:
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xFF66 <= code <= 0xFF9F  # half-width katakana
    )


def _is_latin_letter(char: str) -> bool:
    # Latin-1 and Latin Extended letters too, so "café" counts as Latin.
    return char.isalpha() and ord(char) < 0x0250


def _locale_language(locale: str | None) -> Language:
    if locale and locale.replace("_", "-").lower().split("-")[0] == "ja":
        return Language.JAPANESE
    return Language.ENGLISH


def detect_language(text: str, *, locale: str | None = None) -> Language:
    """Pick Japanese or English for `text`.

    The script wins over the locale: a ja-JP customer who writes in English gets nothing from
    a Japanese lexicon. The locale (e.g. ``ja-JP``) decides only when the script does not, as
    for text that is all digits, emoji or punctuation. Text in other languages falls to the
    closer script (kanji-only Chinese to Japanese, other Latin-script languages to English).
    """
    japanese = latin = 0
    for char in text:
        if _is_japanese(char):
            japanese += 1
        elif _is_latin_letter(char):
            latin += 1
    weighted_japanese = japanese * _JAPANESE_CHAR_WEIGHT
    if weighted_japanese > latin:
        return Language.JAPANESE
    if latin > weighted_japanese:
        return Language.ENGLISH
    return _locale_language(locale)
