"""The simulated customer base: who they are, which identifiers and devices they carry, and
which way their experience is heading.

Everything is drawn from one ``random.Random`` per customer, seeded from the run's seed,
namespace and the customer's index, so a customer is the same whatever else is generated.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from typing import Final, Literal

from cxm_sim.texts import PROBLEMS

Persona = Literal["delighted", "steady", "drifting", "browser"]

# Shares of the base. Browsers never sign in: they stay anonymous profiles.
PERSONA_WEIGHTS: Final[dict[Persona, float]] = {
    "delighted": 0.20,
    "steady": 0.45,
    "drifting": 0.20,
    "browser": 0.15,
}

GIVEN_JA: Final = ("haruto", "yui", "sota", "hina", "ren", "aoi", "yuto", "mei", "riku", "sakura")
FAMILY_JA: Final = ("sato", "suzuki", "takahashi", "tanaka", "ito", "watanabe", "yamamoto")
GIVEN_EN: Final = ("emma", "liam", "olivia", "noah", "ava", "james", "mia", "lucas", "chloe")
FAMILY_EN: Final = ("smith", "johnson", "brown", "taylor", "wilson", "clark", "walker")
REGIONS_JA: Final = ("kanto", "kansai", "chubu", "kyushu", "tohoku", "hokkaido")
CATEGORIES: Final = ("shoes", "outerwear", "bags", "kitchen", "beauty", "electronics", "books")
BRANDS: Final = ("aozora", "kumo", "northwind", "sakura-lab", "tidal", "urban-fox")
INTERESTS: Final = ("running", "cooking", "outdoor", "fashion", "gadgets", "reading", "travel")
STORES: Final = ("st-shibuya", "st-umeda", "st-sakae", "st-tenjin", "st-sapporo")


@dataclass(slots=True)
class Customer:
    index: int
    persona: Persona
    locale: str
    rng: random.Random = field(repr=False)
    traits: dict[str, object]
    user_id: str | None
    email: str | None
    phone: str | None
    loyalty_id: str | None
    devices: list[str]  # app installs (device_id)
    browsers: list[str]  # web browsers (anonymous_id)
    favourite_category: str
    favourite_brand: str
    signup_week: int
    drift_week: int | None  # drifting customers: the week things start to go wrong
    problem: str | None  # their recurring problem (a PROBLEMS entry)
    prefers: str  # main purchase channel: web | app | store

    @property
    def registered(self) -> bool:
        return self.user_id is not None

    @property
    def store_shopper(self) -> bool:
        return self.loyalty_id is not None

    @property
    def language(self) -> str:
        return "ja" if self.locale.startswith("ja") else "en"

    def identifiers(self) -> dict[str, str]:
        """Every identifier this customer ever uses, one value per type (the first device)."""
        found = {
            "user_id": self.user_id,
            "email": self.email,
            "phone": self.phone,
            "loyalty_id": self.loyalty_id,
            "device_id": self.devices[0] if self.devices else None,
            "anonymous_id": self.browsers[0] if self.browsers else None,
        }
        return {k: v for k, v in found.items() if v}


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def phone_number(namespace: str, index: int) -> str:
    """A valid Japanese mobile number, distinct for every index of one namespace
    (7919 is prime, so index -> offset is one-to-one modulo 10**8)."""
    digits = (_digest("phone", namespace) + index * 7919) % 10**8
    return f"080-{digits // 10**4:04d}-{digits % 10**4:04d}"


def make_customer(*, seed: int, namespace: str, index: int, weeks: int) -> Customer:
    rng = random.Random(f"cxm-sim|{seed}|{namespace}|{index}")
    persona: Persona = rng.choices(list(PERSONA_WEIGHTS), weights=list(PERSONA_WEIGHTS.values()))[0]
    locale = rng.choices(["ja-JP", "en-US", "en-GB"], weights=[0.7, 0.2, 0.1])[0]
    ja = locale.startswith("ja")
    given = rng.choice(GIVEN_JA if ja else GIVEN_EN)
    family = rng.choice(FAMILY_JA if ja else FAMILY_EN)
    traits: dict[str, object] = {
        "age": rng.randint(18, 79),
        "gender": rng.choice(["female", "male", "unspecified"]),
        "region": rng.choice(REGIONS_JA),
        "interests": sorted(rng.sample(INTERESTS, k=rng.randint(1, 3))),
        "language": "ja" if ja else "en",
    }
    browsers = [_uuid(rng) for _ in range(rng.choices([1, 2], weights=[0.6, 0.4])[0])]
    has_app = rng.random() < (0.25 if persona == "browser" else 0.65)
    devices = [_uuid(rng) for _ in range(rng.randint(1, 2))] if has_app else []
    tag = f"{namespace}-{index:05d}"
    registered = persona != "browser"
    store_shopper = registered and rng.random() < 0.55
    prefers = rng.choices(["web", "app", "store"], weights=[0.45, 0.3, 0.25])[0]
    if prefers == "app" and not devices:
        prefers = "web"
    if prefers == "store" and not store_shopper:
        prefers = "web"
    last_week = max(weeks - 1, 0)
    signup_week = rng.choice(range(min(3, weeks))) if registered else 0
    drift_week = None
    problem = None
    if persona == "drifting":
        # After a healthy start as a customer, early enough to show the slide.
        first = min(signup_week + 1, last_week)
        drift_week = rng.randint(first, max(first, min(last_week, signup_week + weeks // 3)))
        problem = rng.choice(PROBLEMS)
    return Customer(
        index=index,
        persona=persona,
        locale=locale,
        rng=rng,
        traits=traits if registered else {},
        user_id=f"usr-{tag}" if registered else None,
        email=f"{given}.{family}.{tag}@{'example.jp' if ja else 'example.com'}"
        if registered
        else None,
        phone=phone_number(namespace, index) if registered and rng.random() < 0.7 else None,
        loyalty_id=f"LC{_digest('loyalty', namespace, index) % 10**10:010d}"
        if store_shopper
        else None,
        devices=devices,
        browsers=browsers,
        favourite_category=rng.choice(CATEGORIES),
        favourite_brand=rng.choice(BRANDS),
        signup_week=signup_week,
        drift_week=drift_week,
        problem=problem,
        prefers=prefers,
    )


def make_population(*, seed: int, namespace: str, customers: int, weeks: int) -> list[Customer]:
    return [
        make_customer(seed=seed, namespace=namespace, index=i, weeks=weeks)
        for i in range(customers)
    ]
