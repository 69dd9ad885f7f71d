"""A small driver for identity tests: the real service functions over the in-memory graph."""

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from cxm_profile.identity.identifiers import identifier_key, parse_identifiers
from cxm_profile.identity.models import Resolution
from cxm_profile.identity.normalisers import normalise
from cxm_profile.identity.repository import InMemoryIdentityRepository
from cxm_profile.identity.resolution import IdentityEvent, decide
from cxm_profile.identity.rules import DEFAULT_RULES, ResolutionRules, load_rules
from cxm_profile.identity.service import resolve_event

SECRET = b"identity-tests"
START = datetime(2026, 1, 1, tzinfo=UTC)


class IdentityWorld:
    def __init__(self, rules: ResolutionRules) -> None:
        self.rules = rules
        self.repository = InMemoryIdentityRepository()
        self._ticks = count()

    def now(self) -> datetime:
        return START + timedelta(seconds=next(self._ticks))

    def key(self, identifier_type: str, value: str) -> str:
        rule = self.rules.types[identifier_type]
        normalised = normalise(
            value, normaliser=rule.normaliser, default_region=self.rules.default_region
        )
        return identifier_key(identifier_type=identifier_type, normalised=normalised, secret=SECRET)

    def customer_of(self, identifier_type: str, value: str) -> str | None:
        return self.repository.customer_of(self.key(identifier_type, value))

    async def send(
        self, event_id: str, channel: str, touchpoint: str | None = None, **identifiers: str
    ) -> Resolution:
        return await resolve_event(
            event_id=event_id,
            channel=channel,
            touchpoint=touchpoint,
            identifiers=identifiers,
            rules=self.rules,
            secret=SECRET,
            repository=self.repository,
            now=self.now(),
        )

    def send_now(self, event_id: str, channel: str, identifiers: dict[str, str]) -> Resolution:
        """The same steps as `resolve_event`, synchronously, for hypothesis loops."""
        parsed = parse_identifiers(identifiers, rules=self.rules, secret=SECRET)
        facts = self.repository.facts_for(event_id=event_id, keys=[i.key for i in parsed.accepted])
        event = IdentityEvent(event_id, channel, None, parsed)
        resolution = decide(event, facts=facts, rules=self.rules, now=self.now())
        self.repository.commit(resolution)
        return resolution


@pytest.fixture
def world() -> IdentityWorld:
    return IdentityWorld(load_rules(DEFAULT_RULES))


@pytest.fixture(scope="session")
def new_world() -> type[IdentityWorld]:
    """The driver class itself, for hypothesis tests that need a fresh world per example."""
    return IdentityWorld
