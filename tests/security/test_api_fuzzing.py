"""schemathesis against the OpenAPI document of every running service: schema-valid and
schema-violating requests (examples, coverage, fuzzing and stateful phases, every check:
no 5xx, only documented statuses, responses matching their schema, invalid data refused,
valid data not refused, routes refusing requests without or with a bad credential,
deleted resources gone), with a fixed seed and deterministic generation, a few examples per
operation so the module stays well under 90 s. 0 failures.

Plus the stateful link that matters most, asserted directly: erase a customer found by an
identifier, then every read of them is a 404.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SEED = 20261123
MAX_EXAMPLES = 5
ST = Path(sys.executable).parent / "st"
AUTH = {
    "ingest": ["-a", "dev-write-key:"],
    "profile": ["-H", "Authorization: Bearer dev-api-token"],
    "scoring": ["-H", "Authorization: Bearer dev-api-token"],
    "alerting": ["-H", "Authorization: Bearer dev-api-token"],
}
# Where a schema-valid request is still refused by a rule JSON Schema cannot state, and why.
# positive_data_acceptance is off for these operations only; every other check still runs.
SEMANTIC = {
    # The value must parse as the named identifier type (an email for type=email...), a
    # placement must be one the decision rules define, a cursor one the API returned.
    "profile": ["/v1/profiles/lookup$", "/v1/decisions$", "/timeline$"],
    # The ingest's bodies are validated per event type in code (typed properties, Segment
    # message shapes); its OpenAPI does not describe them, so "valid" data is a guess.
    "ingest": [".*"],
    # Silence matchers are a small language (name="value", name=~"regex").
    "alerting": ["/v1/silences$"],
}


async def fuzz(service: str, url: str, report: Path, config: Path) -> tuple[int, str]:
    args = [
        str(ST),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        # Every check is on by default (the config file only turns one off per operation).
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--no-shrink",
        "--workers",
        "1",
        "--request-timeout",
        "15",
        "--max-failures",
        "20",
        # An endless event stream once authenticated (its auth is in test_auth.py), and the
        # probes, which take no input and answer from the dependencies' state (see
        # test_dependency_outages.py).
        "--exclude-path-regex",
        "/stream$|^/readyz$|^/healthz$",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        "--no-color",
        *AUTH[service],
    ]
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=report.parent,  # schemathesis keeps state in ./.schemathesis: not in the checkout
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 240)
    return process.returncode or 0, output.decode(errors="replace")


def config_file(tmp_path: Path, service: str) -> Path:
    """schemathesis.toml: positive_data_acceptance off for the SEMANTIC operations only."""
    lines = [""]
    for pattern in SEMANTIC.get(service, []):
        lines += [
            "[[operations]]",
            f'include-path-regex = "{pattern}"',
            "checks.positive_data_acceptance.enabled = false",
            "",
        ]
    path = tmp_path / f"schemathesis-{service}.toml"
    path.write_text("\n".join(lines))
    return path


async def test_every_service_survives_fuzzing(security_platform: Any, tmp_path: Path) -> None:
    urls = security_platform.platform.urls
    services = list(AUTH)
    results = await asyncio.gather(
        *(fuzz(s, urls[s], tmp_path / f"{s}.xml", config_file(tmp_path, s)) for s in services),
        return_exceptions=True,
    )
    failed = []
    for service, result in zip(services, results, strict=True):
        assert not isinstance(result, BaseException), f"{service}: {result!r}"
        code, output = result
        summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-3000:]
        print(f"--- {service}\n{summary}")
        if code != 0:
            failed.append(f"=== {service} (exit {code})\n{output[-12000:]}")
    assert not failed, "\n".join(failed)


async def test_erased_customer_is_gone_from_every_read(security_platform: Any) -> None:
    platform = security_platform.platform
    email = f"erase-{uuid.uuid4().hex[:10]}@example.com"
    await platform.post(
        {
            "event_id": f"ev-{uuid.uuid4().hex}",
            "type": "page_view",
            "channel": "web",
            "occurred_at": "2026-03-01T10:00:00Z",
            "identifiers": {"email": email},
        }
    )
    profile = await platform.profile_when("email", email, lambda p: True, what="the profile")
    customer = profile["customer_id"]
    api = platform.api["profile"]
    erased = await api.delete(f"/v1/profiles/{customer}")
    assert erased.status_code == 200, erased.text
    assert customer in erased.json()["erased_customer_ids"]
    reads = [
        await api.get(f"/v1/profiles/{customer}"),
        await api.get(f"/v1/profiles/{customer}/timeline"),
        await api.get(f"/v1/profiles/{customer}/merges"),
        await platform.lookup("email", email),
        await api.delete(f"/v1/profiles/{customer}"),
    ]
    assert [r.status_code for r in reads] == [404] * len(reads), [r.text for r in reads]
