"""Turn raw identifier values into one canonical spelling, so the same person matches.

Emails are trimmed and lower-cased, and nothing else: we do NOT strip `+tags` or dots in the
local part. Whether `a.b+x@` and `ab@` reach the same mailbox is a rule of each mail provider
(Gmail ignores dots, most providers do not), so stripping would join distinct people on other
providers. A false merge is worse than a missed one: a missed join is fixed by the next event
that carries both identifiers, a false one mixes two people's data until someone unmerges it.
"""

from enum import StrEnum

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from cxm_profile.identity.errors import InvalidIdentifierValue


class Normaliser(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    TRIM = "trim"  # opaque ids (user, device, loyalty numbers) are case-sensitive
    LOWER = "lower"


def normalise_email(value: str) -> str:
    try:
        validated = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        # The library's message quotes no part of the address, so it is safe to pass on.
        raise InvalidIdentifierValue(f"invalid email: {error}") from error
    return validated.normalized.lower()


def normalise_phone(value: str, *, default_region: str) -> str:
    """E.164 (`+819012345678`); numbers without a country code are read in `default_region`."""
    try:
        number = phonenumbers.parse(value.strip(), default_region)
    except phonenumbers.NumberParseException as error:
        raise InvalidIdentifierValue("invalid phone: not a phone number") from error
    if not phonenumbers.is_valid_number(number):
        raise InvalidIdentifierValue(
            f"invalid phone: not a valid number (default region {default_region})"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise(value: str, *, normaliser: Normaliser, default_region: str) -> str:
    match normaliser:
        case Normaliser.EMAIL:
            return normalise_email(value)
        case Normaliser.PHONE:
            return normalise_phone(value, default_region=default_region)
        case Normaliser.LOWER:
            result = value.strip().lower()
        case Normaliser.TRIM:
            result = value.strip()
    if not result:
        raise InvalidIdentifierValue("empty value")
    return result


def mask(normalised: str, *, normaliser: Normaliser) -> str:
    """A display form that lets a person recognise a value without revealing it."""
    if normaliser is Normaliser.EMAIL and "@" in normalised:
        local, _, domain = normalised.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if normaliser is Normaliser.PHONE and normalised.startswith("+"):
        country = str(phonenumbers.parse(normalised).country_code)
        hidden = len(normalised) - 1 - len(country) - 2
        return f"+{country}{'*' * max(hidden, 0)}{normalised[-2:]}"
    if len(normalised) <= 6:
        return "***"
    return f"{normalised[:2]}***{normalised[-2:]}"
