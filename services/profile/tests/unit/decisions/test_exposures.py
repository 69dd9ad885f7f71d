"""Exposure logging with a fake producer: idempotent ids, no repeats, failures counted and
resent, no raw identifier values."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from cxm_profile import metrics
from cxm_profile.decisions.exposures import ExposureLog, exposure_event_id
from cxm_profile.decisions.rules import Content, Decision
from cxm_profile.identity.identifiers import KEYED_TYPE, keyed, parse_identifiers
from cxm_profile.identity.rules import DEFAULT_RULES, load_rules
from cxm_shared.events import Touchpoint, decode
from cxm_shared.topics import Topics

SECRET = b"exposure-tests"
AT = datetime(2026, 5, 1, 23, 30, tzinfo=UTC)
DECISION = Decision(
    placement="home_banner",
    content=Content(id="bold-banner"),
    source="experiment",
    experiment_id="banner_test",
    variant="bold",
)


class FakeProducer:
    """Records sends; `fail` makes the acknowledgement fail as a broker time-out would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail = False

    async def send(self, topic: str, *, key: bytes, value: bytes) -> asyncio.Future[Any]:
        acknowledged: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail:
            acknowledged.set_exception(KafkaTimeoutError())
        else:
            self.sent.append((topic, key, value))
            acknowledged.set_result(None)
        return acknowledged


def count(outcome: str) -> float:
    return metrics.EXPOSURES.labels(outcome=outcome)._value.get()


def email_key(value: str) -> str:
    rules = load_rules(DEFAULT_RULES)
    return parse_identifiers({"email": value}, rules=rules, secret=SECRET).accepted[0].key


async def settle(log: ExposureLog) -> None:
    await log.close()  # waits for the sends in flight; the log stays usable


async def test_one_exposure_per_customer_experiment_and_day() -> None:
    producer = FakeProducer()
    log = ExposureLog(producer=lambda: producer, topics=Topics(prefix="x."))
    ids = keyed("email", email_key("hanako@example.org"))
    repeated = count("repeated")
    first = log.record(decision=DECISION, customer_id="c1", identifiers=ids, channel="web", at=AT)
    for minutes in (1, 5, 20):
        again = log.record(
            decision=DECISION,
            customer_id="c1",
            identifiers=ids,
            channel="web",
            at=AT + timedelta(minutes=minutes),
        )
        assert again == first
    await settle(log)
    assert len(producer.sent) == 1
    assert count("repeated") == repeated + 3
    next_day = log.record(
        decision=DECISION,
        customer_id="c1",
        identifiers=ids,
        channel="web",
        at=AT + timedelta(hours=1),  # past midnight UTC
    )
    other = log.record(decision=DECISION, customer_id="c2", identifiers=ids, channel="web", at=AT)
    assert len({first, next_day, other}) == 3
    await settle(log)
    assert len(producer.sent) == 3
    # Another process (a fresh log) names the same exposure with the same id.
    assert first == exposure_event_id(
        experiment_id="banner_test", customer_id="c1", day="2026-05-01"
    )


async def test_the_exposure_event_follows_the_contract_and_names_no_raw_value() -> None:
    producer = FakeProducer()
    log = ExposureLog(producer=lambda: producer, topics=Topics(prefix="x."))
    key = email_key("hanako@example.org")
    log.record(
        decision=DECISION, customer_id="c1", identifiers=keyed("email", key), channel="web", at=AT
    )
    await settle(log)
    ((topic, kafka_key, value),) = producer.sent
    assert topic == "x.cx.touchpoints" and kafka_key == b"c1"
    assert b"hanako" not in value
    event = decode(Touchpoint, value)
    assert event.type == "experiment_exposure"
    assert event.context == {"experiment": {"id": "banner_test", "variant": "bold"}}
    assert event.touchpoint == "home_banner" and event.properties["content_id"] == "bold-banner"
    # The resolver reads the keyed identifier back as the customer's email key.
    parsed = parse_identifiers(event.identifiers, rules=load_rules(DEFAULT_RULES), secret=SECRET)
    assert [(i.type, i.key) for i in parsed.accepted] == [("email", key)]


async def test_a_failed_send_is_counted_and_resent_by_the_next_decision() -> None:
    producer = FakeProducer()
    log = ExposureLog(producer=lambda: producer, topics=Topics(prefix="x."))
    ids = keyed("user_id", "a" * 64)
    failed, sent = count("failed"), count("sent")
    producer.fail = True
    log.record(decision=DECISION, customer_id="c9", identifiers=ids, channel="web", at=AT)
    await settle(log)
    assert count("failed") == failed + 1 and producer.sent == []
    producer.fail = False
    log.record(decision=DECISION, customer_id="c9", identifiers=ids, channel="web", at=AT)
    await settle(log)
    assert len(producer.sent) == 1 and count("sent") == sent + 1


async def test_a_broken_keyed_identifier_is_ignored_not_trusted() -> None:
    rules = load_rules(DEFAULT_RULES)
    for value in ("email:not-hex", "nosuchtype:" + "a" * 64, "email:" + "A" * 64):
        parsed = parse_identifiers({KEYED_TYPE: value}, rules=rules, secret=SECRET)
        assert parsed.accepted == () and parsed.ignored[0].masked == "***"
