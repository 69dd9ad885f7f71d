import copy
from typing import Any

import pytest

from cxm_profile.identity.errors import InvalidRulesError
from cxm_profile.identity.rules import DEFAULT_RULES, Trust, load_rules


def _config(**changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(dict(DEFAULT_RULES))
    config.update(changes)
    return config


def test_default_rules_load_and_answer_questions() -> None:
    rules = load_rules(DEFAULT_RULES)
    assert rules.limit("user_id") == 1
    assert rules.limit("device_id") == 5
    assert rules.is_strong("email") and not rules.is_strong("device_id")
    assert rules.rank("user_id") < rules.rank("email") < rules.rank("anonymous_id")


def test_channel_trust_prefers_the_most_specific_setting() -> None:
    rules = load_rules(_config(channel_trust={"store": "high", "store/tablet": "low"}))
    assert rules.trust_of(channel="store", touchpoint="tablet") is Trust.LOW
    assert rules.trust_of(channel="store", touchpoint="checkout") is Trust.HIGH
    assert rules.trust_of(channel="web", touchpoint=None) is Trust.HIGH


def test_a_custom_type_can_be_configured() -> None:
    config = _config()
    config["types"]["member_no"] = {"strength": "strong", "normaliser": "lower"}
    config["priority"] = ["member_no", *config["priority"]]
    assert load_rules(config).rank("member_no") == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"priority": ["user_id"]}, "does not rank"),
        ({"default_region": "XX"}, "not a known region"),
        (
            {
                "priority": [
                    "device_id",
                    *[t for t in DEFAULT_RULES["priority"] if t != "device_id"],
                ]
            },
            "strong type must rank above every weak",
        ),
        ({"channel_trust": {"call_center": "maybe"}}, "channel_trust.call_center"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_rules_say_what_is_wrong(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRulesError, match=message):
        load_rules(_config(**changes))


def test_invalid_type_rules_name_the_field() -> None:
    config = _config()
    config["types"]["user_id"] = {"strength": "strong", "unique": True, "max_per_customer": 3}
    config["types"]["device_id"]["max_per_customer"] = 0
    config["types"]["phone"]["blocked"] = ["not a phone"]
    with pytest.raises(InvalidRulesError) as caught:
        load_rules(config)
    text = str(caught.value)
    assert "types.user_id" in text and "unique" in text
    assert "types.device_id.max_per_customer" in text


def test_a_blocked_phone_that_is_not_a_phone_is_refused() -> None:
    config = _config()
    config["types"]["phone"]["blocked"] = ["not a phone"]
    with pytest.raises(InvalidRulesError, match=r"types\.phone\.blocked"):
        load_rules(config)
