import pytest

from cxm_profile.identity.errors import InvalidIdentifierValue
from cxm_profile.identity.normalisers import (
    Normaliser,
    mask,
    normalise,
    normalise_email,
    normalise_phone,
)


def test_email_is_trimmed_and_lower_cased_but_tags_and_dots_are_kept() -> None:
    assert normalise_email("  Taro.Yamada+Shop@Example.ORG ") == "taro.yamada+shop@example.org"


@pytest.mark.parametrize("value", ["taro", "taro@", "@example.org", "a b@example.org"])
def test_invalid_email_is_rejected_with_a_reason(value: str) -> None:
    with pytest.raises(InvalidIdentifierValue) as caught:
        normalise_email(value)
    assert caught.value.reason.startswith("invalid email")


@pytest.mark.parametrize(
    ("value", "region", "expected"),
    [
        ("090-1234-5678", "JP", "+819012345678"),
        ("+81 90 1234 5678", "US", "+819012345678"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("03-1234-5678", "JP", "+81312345678"),
    ],
)
def test_phone_becomes_e164_using_the_default_region(
    value: str, region: str, expected: str
) -> None:
    assert normalise_phone(value, default_region=region) == expected


@pytest.mark.parametrize("value", ["hello", "12", "090-1234"])
def test_invalid_phone_is_rejected_with_a_reason(value: str) -> None:
    with pytest.raises(InvalidIdentifierValue) as caught:
        normalise_phone(value, default_region="JP")
    assert caught.value.reason.startswith("invalid phone")


def test_opaque_ids_keep_their_case_and_blank_ones_are_rejected() -> None:
    assert normalise(" AbC-1 ", normaliser=Normaliser.TRIM, default_region="JP") == "AbC-1"
    with pytest.raises(InvalidIdentifierValue):
        normalise("   ", normaliser=Normaliser.TRIM, default_region="JP")


def test_masks_show_just_enough_to_recognise_a_value() -> None:
    assert mask("taro@example.com", normaliser=Normaliser.EMAIL) == "t***@example.com"
    assert mask("+819012345678", normaliser=Normaliser.PHONE) == "+81********78"
    assert mask("device-12345", normaliser=Normaliser.TRIM) == "de***45"
    assert mask("abc", normaliser=Normaliser.TRIM) == "***"
