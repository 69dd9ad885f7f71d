import copy

from cxm_profile.identity.identifiers import identifier_key, parse_identifiers
from cxm_profile.identity.rules import DEFAULT_RULES, load_rules

SECRET = b"unit-test-secret"


def _rules_with_store_phone() -> object:
    config = copy.deepcopy(dict(DEFAULT_RULES))
    config["types"]["phone"]["blocked"] = ["03-1234-5678"]  # the store's own number
    return load_rules(config)


def test_the_same_person_spelled_differently_gets_the_same_key() -> None:
    rules = load_rules(DEFAULT_RULES)
    a = parse_identifiers(
        {"email": "Taro@Example.org", "phone": "090-1234-5678"}, rules=rules, secret=SECRET
    )
    b = parse_identifiers(
        {"email": " taro@example.org", "phone": "+81 90 1234 5678"}, rules=rules, secret=SECRET
    )
    assert [i.key for i in a.accepted] == [i.key for i in b.accepted]


def test_keys_are_keyed_hashes_of_type_and_value() -> None:
    one = identifier_key(identifier_type="user_id", normalised="42", secret=SECRET)
    assert one != identifier_key(identifier_type="user_id", normalised="42", secret=b"other")
    assert one != identifier_key(identifier_type="loyalty_id", normalised="42", secret=SECRET)
    assert "42" not in one and len(one) == 64


def test_raw_values_appear_nowhere_in_the_parsed_result() -> None:
    rules = load_rules(DEFAULT_RULES)
    parsed = parse_identifiers(
        {"email": "hanako@example.org", "phone": "090-9876-5432", "user_id": "hanako-77"},
        rules=rules,
        secret=SECRET,
    )
    text = repr(parsed)
    for raw in ("hanako@", "9876", "hanako-77"):
        assert raw not in text
    assert [i.type for i in parsed.accepted] == ["user_id", "email", "phone"]  # priority order


def test_placeholders_blocked_and_invalid_values_are_ignored_with_reasons() -> None:
    rules = _rules_with_store_phone()
    parsed = parse_identifiers(
        {
            "user_id": "undefined",
            "anonymous_id": " NULL ",
            "device_id": 0,
            "email": "test@example.com",
            "phone": "+81-3-1234-5678",
            "loyalty_id": "",
            "cookie_id": None,
            "favourite_colour": "blue",
            "member_no": ["x"],
        },
        rules=rules,  # type: ignore[arg-type]
        secret=SECRET,
    )
    assert parsed.accepted == ()
    reasons = {i.type: i.reason for i in parsed.ignored}
    assert reasons == {
        "user_id": "blocked placeholder value",
        "anonymous_id": "blocked placeholder value",
        "device_id": "blocked placeholder value",
        "email": "blocked value",
        "phone": "blocked value",
        "loyalty_id": "blocked placeholder value",
        "favourite_colour": "unknown identifier type",
        "member_no": "not a string",
    }


def test_an_invalid_phone_is_ignored_and_the_rest_is_kept() -> None:
    rules = load_rules(DEFAULT_RULES)
    parsed = parse_identifiers(
        {"phone": "12", "email": "a@example.org"}, rules=rules, secret=SECRET
    )
    assert [i.type for i in parsed.accepted] == ["email"]
    assert parsed.ignored[0].type == "phone"
    assert parsed.ignored[0].reason.startswith("invalid phone")
