"""Week-by-week journeys of the simulated customers, as native ingest events.

The identifiers an event carries are the ones the channel system really knows: the web site
knows the browser's anonymous id (and the user id once signed in), the app its device id and
user id, the store the loyalty card, the hotline the caller's phone number, the carrier and
the survey tool the email address. What ties them into one person are a few *joining* events,
each seen by a trusted channel: signing up on the web (browser + user id + email), signing
in on the app or another browser (device or browser + user id), registering a loyalty card
in a store (card + email + phone) or adding a phone number to the account (user id + phone).
Every other event carries a single strong identifier or a weak one with its user id, so the
customer the platform resolves does not depend on the order it processes them in.

Drifting customers buy less, answer surveys as detractors, call again and again about the
same problem and see parcels fail; delighted ones buy often and answer as promoters.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cxm_sim.people import BRANDS, CATEGORIES, STORES, Customer, make_population
from cxm_sim.texts import ANGRY, HAPPY, PLAIN, ROUTINE_REASONS

JST = timezone(timedelta(hours=9), "JST")
WEEK = timedelta(days=7)

USER_AGENTS = {
    "web": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.1 Safari",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile",
    ),
    "app": ("CXMShop/5.2.0 (iOS 18.1; iPhone15,2)", "CXMShop/5.2.0 (Android 15; Pixel 8)"),
}
SITE = "https://shop.example.jp"
EXPERIMENT = "checkout-2026"


@dataclass(frozen=True, slots=True)
class SimConfig:
    customers: int
    weeks: int
    seed: int
    end: datetime  # the simulated period ends here (exclusive), timezone-aware
    namespace: str  # part of every identifier and event id: runs never collide

    @property
    def start(self) -> datetime:
        return self.end - self.weeks * WEEK


@dataclass(frozen=True, slots=True)
class Planned:
    """One event and the simulated customer it belongs to (known only to the simulator)."""

    customer: int
    persona: str
    event: dict[str, Any]


def default_namespace(*, seed: int, customers: int, weeks: int, end: datetime) -> str:
    """Every option that shapes the population is in it: the same options give the same
    customers (a re-run is answered "duplicate"), other options new ones."""
    return f"s{seed}c{customers}w{weeks}-{end.astimezone(UTC):%y%m%d}"


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass(slots=True)
class _Journey:
    """The per-customer bookkeeping while generating (sequence numbers, open orders)."""

    customer: Customer
    config: SimConfig
    seq: int = 0
    orders: int = 0
    variant: str = "A"
    out: list[tuple[datetime, str, Planned]] = field(default_factory=list)

    # -- building blocks ---------------------------------------------------------------------

    def emit(
        self,
        *,
        type: str,
        channel: str,
        touchpoint: str,
        at: datetime,
        identifiers: dict[str, str],
        properties: dict[str, Any] | None = None,
        traits: dict[str, Any] | None = None,
        page: str | None = None,
        experiment: bool = False,
    ) -> None:
        c = self.customer
        self.seq += 1
        event_id = f"sim-{self.config.namespace}-{c.index:05d}-{self.seq:04d}"
        context: dict[str, Any] = {"locale": c.locale}
        if channel in USER_AGENTS:
            agents = USER_AGENTS[channel]
            context["user_agent"] = agents[c.index % len(agents)]
        if page is not None:
            context["page"] = {"url": f"{SITE}{page}"}
        if experiment:
            context["experiment"] = {"id": EXPERIMENT, "variant": self.variant}
        event: dict[str, Any] = {
            "event_id": event_id,
            "type": type,
            "channel": channel,
            "touchpoint": touchpoint,
            "occurred_at": at.astimezone(JST).isoformat(timespec="seconds"),
            "identifiers": dict(identifiers),
            "properties": properties or {},
            "context": context,
        }
        if traits:
            event["traits"] = traits
        self.out.append((at, event_id, Planned(c.index, c.persona, event)))

    def moment(self, week: int, *, opening: int = 7, closing: int = 23) -> datetime:
        """A random time in ``week`` at an hour when people shop (JST)."""
        rng = self.customer.rng
        day = self.config.start + week * WEEK + timedelta(days=rng.randrange(7))
        local = day.astimezone(JST).replace(hour=0, minute=0, second=0)
        return local + timedelta(
            hours=rng.randint(opening, closing - 1),
            minutes=rng.randrange(60),
            seconds=rng.randrange(60),
        )

    def mood(self, week: int) -> str:
        c = self.customer
        if c.persona == "drifting" and c.drift_week is not None and week >= c.drift_week:
            return "angry"
        return "happy" if c.persona == "delighted" else "plain"

    def activity(self, week: int) -> float:
        """How active the customer is this week, relative to their usual."""
        c = self.customer
        if c.persona == "delighted":
            return 1.25
        if c.persona == "drifting" and c.drift_week is not None and week >= c.drift_week:
            return 0.5 ** (week - c.drift_week + 1)
        return 1.0

    def web_ids(self, *, signed_in: bool) -> dict[str, str]:
        c = self.customer
        ids = {"anonymous_id": c.rng.choice(c.browsers)}
        if signed_in and c.user_id:
            ids["user_id"] = c.user_id
        return ids

    def app_ids(self) -> dict[str, str]:
        c = self.customer
        ids = {"device_id": c.rng.choice(c.devices)}
        if c.user_id:
            ids["user_id"] = c.user_id
        return ids

    def comment(self, mood: str, *, topic: str | None = None) -> str:
        c = self.customer
        lang = c.language
        if mood == "angry":
            return c.rng.choice(ANGRY[lang][topic or c.problem or "long_wait"])
        if mood == "happy":
            return c.rng.choice(HAPPY[lang])
        return c.rng.choice(PLAIN[lang])

    def answers(self, mood: str, *, nps: bool, csat: bool, ces: bool) -> dict[str, Any]:
        rng = self.customer.rng
        out: dict[str, Any] = {}
        if mood == "angry":
            if nps:
                out["nps"] = rng.choices(range(7), weights=[3, 3, 4, 4, 3, 2, 1])[0]
            if csat:
                out["csat"] = rng.choices([1, 2, 3], weights=[5, 4, 1])[0]
            if ces:
                out["ces"] = rng.choice([4, 5])
            if rng.random() < 0.85:
                out["comment"] = self.comment(mood)
        elif mood == "happy":
            if nps:
                out["nps"] = rng.choices([8, 9, 10], weights=[15, 35, 50])[0]
            if csat:
                out["csat"] = rng.choices([4, 5], weights=[3, 7])[0]
            if ces:
                out["ces"] = rng.choice([1, 2])
            if rng.random() < 0.5:
                out["comment"] = self.comment(mood)
        else:
            if nps:
                out["nps"] = rng.choices(range(5, 11), weights=[5, 10, 25, 30, 20, 10])[0]
            if csat:
                out["csat"] = rng.choices([3, 4, 5], weights=[25, 45, 30])[0]
            if ces:
                out["ces"] = rng.choices([1, 2, 3], weights=[3, 4, 3])[0]
            if rng.random() < 0.3:
                out["comment"] = self.comment(rng.choice(["plain", "happy"]))
        return out

    # -- what happens in a week --------------------------------------------------------------

    def week(self, week: int) -> None:
        c = self.customer
        if not c.registered:
            self.browse_anonymously(week, sessions=_poisson(c.rng, 2.0))
            return
        if week < c.signup_week:
            self.browse_anonymously(week, sessions=_poisson(c.rng, 1.0))
            return
        if week == c.signup_week:
            self.onboard(week)
        m = self.activity(week)
        mood = self.mood(week)
        for _ in range(_poisson(c.rng, 1.2 * m)):
            self.web_session(week)
        if c.devices:
            for _ in range(_poisson(c.rng, 1.5 * m)):
                self.app_session(week, mood)
        rate = {"delighted": 0.9, "steady": 0.5, "drifting": 0.6}[c.persona]
        for _ in range(_poisson(c.rng, rate * m)):
            self.purchase(week, mood)
        if c.rng.random() < 0.25 * m + (0.3 if mood == "angry" else 0.0):
            self.cart_abandon(week)
        if c.store_shopper:
            for _ in range(_poisson(c.rng, 0.6 * m)):
                self.store_visit(week, mood)
        for _ in range(_poisson(c.rng, 0.08)):
            self.support(week, "plain", reason=c.rng.choice(ROUTINE_REASONS))
        if mood == "angry":
            calls = _poisson(c.rng, 1.0) + (1 if week == c.drift_week else 0)
            for _ in range(calls):
                self.support(week, mood, reason=c.problem or "long_wait")
        if c.rng.random() < 0.25:
            self.relationship_survey(week, mood)
        if c.rng.random() < (0.35 if mood == "angry" else 0.06):
            self.review(week, mood)

    def browse_anonymously(self, week: int, *, sessions: int) -> None:
        c = self.customer
        for _ in range(sessions):
            if c.devices and c.rng.random() < 0.4:
                at = self.moment(week)
                for i in range(c.rng.randint(1, 3)):
                    name = c.rng.choice(["home", "search", "product"])
                    self.emit(
                        type="screen_view",
                        channel="app",
                        touchpoint=name,
                        at=at + timedelta(seconds=40 * i),
                        identifiers={"device_id": c.rng.choice(c.devices)},
                        properties={"name": name},
                    )
                continue
            self.web_session(week, signed_in=False)
        if not c.registered and c.rng.random() < 0.2:
            self.cart_abandon(week, signed_in=False)

    def onboard(self, week: int) -> None:
        c = self.customer
        assert c.user_id and c.email
        rng = c.rng
        self.variant = rng.choice(["A", "B"])
        at = self.moment(week)
        self.emit(
            type="page_view",
            channel="web",
            touchpoint="signup",
            at=at,
            identifiers={"anonymous_id": c.browsers[0], "user_id": c.user_id, "email": c.email},
            properties={"url": f"{SITE}/signup/complete", "title": "Welcome"},
            traits=dict(c.traits),
            page="/signup/complete",
        )
        for i, browser in enumerate(c.browsers[1:], start=1):
            self.emit(
                type="page_view",
                channel="web",
                touchpoint="login",
                at=at + timedelta(hours=20 * i),
                identifiers={"anonymous_id": browser, "user_id": c.user_id},
                properties={"url": f"{SITE}/login", "title": "Sign in"},
                page="/login",
            )
        for i, device in enumerate(c.devices):
            self.emit(
                type="screen_view",
                channel="app",
                touchpoint="login",
                at=at + timedelta(hours=2 + 30 * i),
                identifiers={"device_id": device, "user_id": c.user_id},
                properties={"name": "login"},
            )
        if c.loyalty_id:
            ids = {"loyalty_id": c.loyalty_id, "email": c.email}
            if c.phone:
                ids["phone"] = c.phone
            self.emit(
                type="store_visit",
                channel="store",
                touchpoint="loyalty_signup",
                at=at + timedelta(days=1, hours=3),
                identifiers=ids,
                properties={"store_id": rng.choice(STORES), "duration_seconds": 900.0},
            )
        elif c.phone:
            self.emit(
                type="page_view",
                channel="web",
                touchpoint="account",
                at=at + timedelta(minutes=5),
                identifiers={"user_id": c.user_id, "phone": c.phone},
                properties={"url": f"{SITE}/account/phone", "title": "Account"},
                traits={"contact_preference": rng.choice(["email", "sms"])},
                page="/account/phone",
            )

    def web_session(self, week: int, *, signed_in: bool | None = None) -> None:
        c = self.customer
        rng = c.rng
        ids = self.web_ids(signed_in=rng.random() < 0.6 if signed_in is None else signed_in)
        at = self.moment(week)
        pages = ["/", f"/c/{rng.choice(CATEGORIES)}", f"/p/{rng.randrange(10_000, 99_999)}"]
        for i in range(rng.randint(1, 3)):
            touchpoint = ("home", "category_page", "product_page")[i]
            self.emit(
                type="page_view",
                channel="web",
                touchpoint=touchpoint,
                at=at + timedelta(seconds=35 * i),
                identifiers=ids,
                properties={"url": f"{SITE}{pages[i]}", "title": touchpoint.replace("_", " ")},
                page=pages[i],
            )

    def app_session(self, week: int, mood: str) -> None:
        c = self.customer
        rng = c.rng
        ids = self.app_ids()
        at = self.moment(week)
        for i in range(rng.randint(1, 3)):
            name = rng.choice(["home", "search", "product", "wishlist"])
            self.emit(
                type="screen_view",
                channel="app",
                touchpoint=name,
                at=at + timedelta(seconds=30 * i),
                identifiers=ids,
                properties={"name": name},
            )
        if rng.random() < 0.05:
            self.survey(
                at + timedelta(minutes=2),
                channel="app",
                touchpoint="in_app_survey",
                identifiers=ids,
                mood=mood,
                nps=True,
                csat=False,
                ces=False,
            )
        feedback = 0.25 if mood == "angry" and c.problem == "app_trouble" else 0.04
        if rng.random() < feedback:
            topic = "app_trouble" if mood == "angry" else None
            text = self.comment(mood, topic=topic)
            rating = {"angry": 1, "happy": 5}.get(mood, 3)
            self.emit(
                type="feedback",
                channel="app",
                touchpoint="in_app_feedback",
                at=at + timedelta(minutes=3),
                identifiers=ids,
                properties={"comment": text, "rating": rating},
            )

    def items(self) -> list[dict[str, Any]]:
        c = self.customer
        rng = c.rng
        out = []
        for _ in range(rng.choices([1, 2, 3], weights=[6, 3, 1])[0]):
            category = c.favourite_category if rng.random() < 0.6 else rng.choice(CATEGORIES)
            brand = c.favourite_brand if rng.random() < 0.5 else rng.choice(BRANDS)
            out.append(
                {
                    "sku": f"{category[:3].upper()}-{rng.randrange(1000, 9999)}",
                    "category": category,
                    "brand": brand,
                    "price": float(rng.randrange(10, 300) * 100),
                    "quantity": rng.choices([1, 2], weights=[8, 2])[0],
                }
            )
        return out

    def purchase(self, week: int, mood: str) -> None:
        c = self.customer
        rng = c.rng
        channels = ["web"] + (["app"] if c.devices else []) + (["store"] if c.store_shopper else [])
        channel = c.prefers if rng.random() < 0.7 else rng.choice(channels)
        if channel == "web":
            ids = self.web_ids(signed_in=True)
        elif channel == "app":
            ids = self.app_ids()
        else:
            assert c.loyalty_id
            ids = {"loyalty_id": c.loyalty_id}
        self.orders += 1
        order_id = f"ord-{self.config.namespace}-{c.index:05d}-{self.orders:03d}"
        items = self.items()
        amount = sum(i["price"] * i["quantity"] for i in items)
        at = self.moment(week, opening=10, closing=21 if channel == "store" else 24)
        touchpoint = "register" if channel == "store" else "checkout"
        self.emit(
            type="purchase",
            channel=channel,
            touchpoint=touchpoint,
            at=at,
            identifiers=ids,
            properties={"order_id": order_id, "amount": amount, "currency": "JPY", "items": items},
            experiment=channel == "web",
        )
        self.emit(
            type="payment",
            channel=channel,
            touchpoint="payment",
            at=at + timedelta(minutes=1),
            identifiers=ids,
            properties={
                "order_id": order_id,
                "amount": amount,
                "currency": "JPY",
                "method": rng.choice(["card", "paypay", "konbini", "cash"])
                if channel == "store"
                else rng.choice(["card", "paypay", "konbini"]),
                "status": "captured",
            },
        )
        if channel == "web" and rng.random() < 0.2:
            self.survey(
                at + timedelta(minutes=4),
                channel="web",
                touchpoint="checkout_survey",
                identifiers=ids,
                mood=mood,
                nps=rng.random() < 0.5,
                csat=True,
                ces=True,
                experiment=True,
            )
        if channel == "store" and rng.random() < 0.15:
            self.survey(
                at + timedelta(hours=2),
                channel="store",
                touchpoint="receipt_survey",
                identifiers=ids,
                mood=mood,
                nps=True,
                csat=True,
                ces=False,
            )
        if channel != "store":
            self.deliver(at, order_id, amount, mood)

    def deliver(self, ordered: datetime, order_id: str, amount: float, mood: str) -> None:
        c = self.customer
        rng = c.rng
        assert c.email
        ids = {"email": c.email}
        shipped = ordered + timedelta(hours=rng.randint(12, 30))
        self.emit(
            type="delivery",
            channel="delivery",
            touchpoint="delivery",
            at=shipped,
            identifiers=ids,
            properties={"order_id": order_id, "status": "shipped"},
        )
        failing = 0.02
        if mood == "angry":
            failing = 0.8 if c.problem == "delivery_delay" else 0.3
        if rng.random() < failing:
            self.emit(
                type="delivery",
                channel="delivery",
                touchpoint="delivery",
                at=shipped + timedelta(days=2),
                identifiers=ids,
                properties={"order_id": order_id, "status": "delayed", "delayed": True},
            )
            done = shipped + timedelta(days=4)
            self.emit(
                type="delivery",
                channel="delivery",
                touchpoint="delivery",
                at=done,
                identifiers=ids,
                properties={"order_id": order_id, "status": "failed", "delayed": True},
            )
            survey_mood, topic = "angry", "delivery_delay"
        else:
            done = shipped + timedelta(days=rng.randint(1, 2), hours=rng.randint(0, 8))
            self.emit(
                type="delivery",
                channel="delivery",
                touchpoint="delivery",
                at=done,
                identifiers=ids,
                properties={"order_id": order_id, "status": "delivered"},
            )
            survey_mood, topic = mood, None
            broken = 0.4 if mood == "angry" and c.problem == "defective_item" else 0.01
            if rng.random() < broken:
                self.emit(
                    type="return",
                    channel="web",
                    touchpoint="returns",
                    at=done + timedelta(hours=rng.randint(2, 30)),
                    identifiers=self.web_ids(signed_in=True),
                    properties={
                        "order_id": order_id,
                        "reason": "defective",
                        "amount": amount,
                        "kind": "return",
                    },
                )
                survey_mood, topic = "angry", "defective_item"
        if rng.random() < (0.5 if survey_mood == "angry" else 0.3):
            self.survey(
                done + timedelta(hours=rng.randint(1, 20)),
                channel="delivery",
                touchpoint="delivery",
                identifiers=ids,
                mood=survey_mood,
                nps=True,
                csat=True,
                ces=False,
                topic=topic,
            )

    def cart_abandon(self, week: int, *, signed_in: bool = True) -> None:
        items = self.items()
        self.emit(
            type="cart_abandon",
            channel="web",
            touchpoint="cart",
            at=self.moment(week),
            identifiers=self.web_ids(signed_in=signed_in),
            properties={
                "cart_id": f"cart-{self.config.namespace}-{self.customer.index:05d}-{self.seq}",
                "amount": sum(i["price"] * i["quantity"] for i in items),
                "currency": "JPY",
                "items": items,
            },
            page="/cart",
        )

    def store_visit(self, week: int, mood: str) -> None:
        c = self.customer
        assert c.loyalty_id
        self.emit(
            type="store_visit",
            channel="store",
            touchpoint="visit",
            at=self.moment(week, opening=10, closing=21),
            identifiers={"loyalty_id": c.loyalty_id},
            properties={
                "store_id": c.rng.choice(STORES),
                "duration_seconds": float(c.rng.randint(300, 3600)),
            },
        )

    def support(self, week: int, mood: str, *, reason: str) -> None:
        c = self.customer
        rng = c.rng
        by_phone = c.phone is not None and (rng.random() < 0.65 or c.user_id is None)
        if by_phone:
            assert c.phone
            channel, touchpoint, ids = "call_center", "hotline", {"phone": c.phone}
        else:
            assert c.user_id
            channel, touchpoint, ids = "chat", "chat_support", {"user_id": c.user_id}
        angry = mood == "angry"
        at = self.moment(week, opening=9, closing=20)
        self.emit(
            type="support_contact",
            channel=channel,
            touchpoint=touchpoint,
            at=at,
            identifiers=ids,
            properties={
                "reason": reason,
                "wait_seconds": float(rng.randint(600, 2700) if angry else rng.randint(20, 240)),
                "resolved": rng.random() < (0.15 if angry else 0.9),
            },
        )
        if rng.random() < 0.5:
            self.survey(
                at + timedelta(minutes=rng.randint(20, 90)),
                channel=channel,
                touchpoint="post_contact_survey",
                identifiers=ids,
                mood=mood,
                nps=rng.random() < 0.5,
                csat=True,
                ces=True,
                topic="long_wait" if angry and rng.random() < 0.5 else None,
            )

    def relationship_survey(self, week: int, mood: str) -> None:
        c = self.customer
        assert c.email
        self.survey(
            self.moment(week),
            channel="email",
            touchpoint="nps_survey",
            identifiers={"email": c.email},
            mood=mood,
            nps=True,
            csat=False,
            ces=False,
        )

    def review(self, week: int, mood: str) -> None:
        c = self.customer
        assert c.email
        rating = {"angry": c.rng.choice([1, 2]), "happy": c.rng.choice([4, 5])}.get(
            mood, c.rng.choice([3, 4])
        )
        self.emit(
            type="review",
            channel="review_site",
            touchpoint="product_review",
            at=self.moment(week),
            identifiers={"email": c.email},
            properties={"rating": rating, "comment": self.comment(mood), "site": "review-hub"},
        )

    def survey(
        self,
        at: datetime,
        *,
        channel: str,
        touchpoint: str,
        identifiers: dict[str, str],
        mood: str,
        nps: bool,
        csat: bool,
        ces: bool,
        topic: str | None = None,
        experiment: bool = False,
    ) -> None:
        answers = self.answers(mood, nps=nps, csat=csat, ces=ces)
        if topic is not None and "comment" in answers:
            answers["comment"] = self.comment(mood, topic=topic)
        if not answers:
            return
        self.emit(
            type="survey_response",
            channel=channel,
            touchpoint=touchpoint,
            at=at,
            identifiers=identifiers,
            properties={"survey_id": f"{touchpoint}-2026", **answers},
            experiment=experiment,
        )


class World:
    """The population and its journeys; ``weeks()`` yields each simulated week's events in
    time order. Events that would happen after the period's end (a parcel still on its way)
    are not sent."""

    def __init__(self, config: SimConfig) -> None:
        if config.customers < 1 or config.weeks < 1:
            raise ValueError("customers and weeks must be at least 1")
        if config.end.tzinfo is None:
            raise ValueError("end must be timezone-aware")
        self.config = config

    def population(self) -> list[Customer]:
        """A fresh copy of the customers (each draws from its own generator as it goes)."""
        return make_population(
            seed=self.config.seed,
            namespace=self.config.namespace,
            customers=self.config.customers,
            weeks=self.config.weeks,
        )

    def weeks(self) -> Iterator[list[Planned]]:
        journeys = [_Journey(c, self.config) for c in self.population()]
        later: list[tuple[datetime, str, Planned]] = []  # a heap: events due in a later week
        for week in range(self.config.weeks):
            for journey in journeys:
                journey.week(week)
                for item in journey.out:
                    heapq.heappush(later, item)
                journey.out.clear()
            until = self.config.start + (week + 1) * WEEK
            due: list[Planned] = []
            while later and later[0][0] < until:
                due.append(heapq.heappop(later)[2])
            yield due

    def events(self) -> Iterator[Planned]:
        for week in self.weeks():
            yield from week
