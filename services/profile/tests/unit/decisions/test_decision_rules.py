"""Personalisation rules and sticky A/B assignment (pure: no Kafka, no PostgreSQL)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cxm_profile.decisions.rules import (
    DEFAULT_RULES_PATH,
    InvalidDecisionRules,
    UnknownPlacement,
    assign,
    decide,
    load_rules,
    load_rules_file,
)

CONFIG: dict[str, Any] = {
    "placements": {
        "home_banner": {
            "rules": [
                {
                    "name": "vip",
                    "when": {"segments_any": ["vip_at_risk"]},
                    "content": {"id": "vip-offer", "title": "We miss you"},
                },
                {
                    "name": "happy_loyal",
                    "when": {"segments_all": ["rfm:loyal"], "segments_none": ["unhappy"]},
                    "content": {"id": "loyal-thanks"},
                },
            ],
            "default": {"id": "seasonal"},
        },
        "app_hero": {"channel": "app", "default": {"id": "app-default"}},
    },
    "experiments": {
        "banner_test": {
            "placement": "home_banner",
            "eligible": {"segments_any": ["rfm:loyal", "rfm:champions"]},
            "variants": [
                {"name": "control", "weight": 70},
                {"name": "bold", "weight": 30, "content": {"id": "bold-banner"}},
            ],
        }
    },
}


def customers(n: int) -> list[str]:
    return [str(uuid.UUID(int=i * 7919 + 13)) for i in range(n)]


def test_the_first_matching_rule_gives_the_content() -> None:
    rules = load_rules({**CONFIG, "experiments": {}})
    vip = decide(rules, placement="home_banner", customer_id="c1", segments=["vip_at_risk"])
    assert (vip.content.id, vip.source, vip.rule) == ("vip-offer", "rule", "vip")
    assert vip.content.as_dict() == {"id": "vip-offer", "title": "We miss you"}
    both = decide(
        rules, placement="home_banner", customer_id="c1", segments=["rfm:loyal", "vip_at_risk"]
    )
    assert both.rule == "vip"  # order decides
    loyal = decide(rules, placement="home_banner", customer_id="c1", segments=["rfm:loyal"])
    assert loyal.content.id == "loyal-thanks"
    unhappy = decide(
        rules, placement="home_banner", customer_id="c1", segments=["rfm:loyal", "unhappy"]
    )
    assert (unhappy.content.id, unhappy.source) == ("seasonal", "default")


def test_unknown_customers_get_the_default_and_no_experiment() -> None:
    rules = load_rules(CONFIG)
    decision = decide(rules, placement="home_banner", customer_id=None, segments=())
    assert (decision.content.id, decision.source, decision.experiment_id) == (
        "seasonal",
        "default",
        None,
    )


def test_an_unknown_placement_is_refused() -> None:
    with pytest.raises(UnknownPlacement):
        decide(load_rules(CONFIG), placement="nowhere", customer_id="c1", segments=())


def test_only_eligible_customers_enter_the_experiment() -> None:
    rules = load_rules(CONFIG)
    outside = decide(rules, placement="home_banner", customer_id="c1", segments=["vip_at_risk"])
    assert outside.experiment_id is None
    inside = decide(rules, placement="home_banner", customer_id="c1", segments=["rfm:loyal"])
    assert inside.experiment_id == "banner_test"
    assert inside.source == "experiment"


def test_a_control_variant_gets_what_the_rules_give() -> None:
    rules = load_rules(CONFIG)
    seen: dict[str, set[str]] = {"control": set(), "bold": set()}
    for customer in customers(200):
        d = decide(rules, placement="home_banner", customer_id=customer, segments=["rfm:loyal"])
        assert d.variant is not None
        seen[d.variant].add(d.content.id)
        if d.variant == "control":
            assert d.rule == "happy_loyal"
    assert seen == {"control": {"loyal-thanks"}, "bold": {"bold-banner"}}


def test_assignment_follows_the_weights() -> None:
    experiment = load_rules(CONFIG).experiments["banner_test"]
    n = 20_000
    counts = Counter(assign("banner_test", experiment, c).name for c in customers(n))
    # Binomial(20000, 0.3): sd ~ 65, so +-1.5 % is more than 9 sd.
    assert abs(counts["bold"] / n - 0.30) < 0.015
    assert counts["bold"] + counts["control"] == n


def test_assignment_is_sticky_and_differs_between_experiments() -> None:
    rules = load_rules(CONFIG)
    experiment = rules.experiments["banner_test"]
    ids = customers(500)
    first = [assign("banner_test", experiment, c).name for c in ids]
    # A second, freshly loaded configuration (another worker, a restart) agrees.
    again = load_rules(copy.deepcopy(CONFIG)).experiments["banner_test"]
    assert [assign("banner_test", again, c).name for c in ids] == first
    # Another experiment id (or salt) shuffles customers independently.
    other = [assign("other_test", experiment, c).name for c in ids]
    assert other != first
    agree = sum(a == b for a, b in zip(first, other, strict=True)) / len(ids)
    assert 0.45 < agree < 0.70  # independent 70/30 draws agree 0.7²+0.3² = 58 % of the time


def test_another_process_assigns_the_same_variants() -> None:
    # sha256, not Python's per-process randomised hash(): another worker (its own hash seed)
    # gives every customer the same variant.
    experiment = load_rules(CONFIG).experiments["banner_test"]
    ids = customers(300)
    here = [assign("banner_test", experiment, c).name for c in ids]
    script = (
        "import json, sys\n"
        "from cxm_profile.decisions.rules import assign, load_rules\n"
        "config, ids = json.load(sys.stdin)\n"
        "e = load_rules(config).experiments['banner_test']\n"
        "print(json.dumps([assign('banner_test', e, c).name for c in ids]))\n"
    )
    there = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps([CONFIG, ids]),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert json.loads(there.stdout) == here
    assert set(here) == {"control", "bold"}


def test_invalid_rules_name_every_problem() -> None:
    bad = copy.deepcopy(CONFIG)
    bad["experiments"]["banner_test"]["placement"] = "missing"
    bad["experiments"]["banner_test"]["variants"][1]["weight"] = 0
    bad["placements"]["home_banner"]["rules"][1]["name"] = "vip"
    with pytest.raises(InvalidDecisionRules) as error:
        load_rules(bad)
    message = str(error.value)
    assert "experiments.banner_test.variants.1.weight" in message
    assert "placements.home_banner" in message and "share a name" in message
    bad = copy.deepcopy(CONFIG)
    bad["experiments"]["banner_test"]["placement"] = "missing"
    with pytest.raises(InvalidDecisionRules, match="no placement 'missing'"):
        load_rules(bad)


def test_the_bundled_default_rules_load(tmp_path: Path) -> None:
    rules = load_rules_file(None)
    assert "home_banner" in rules.placements
    assert load_rules_file(DEFAULT_RULES_PATH) == rules
    custom = tmp_path / "rules.yaml"
    custom.write_text("placements:\n  p1:\n    default: {id: only}\n")
    assert list(load_rules_file(custom).placements) == ["p1"]
