"""`make demo` on a freshly started platform: the simulator's traffic goes through every
service, and what its summary prints matches what the platform's APIs return."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cxm_shared.testing.infra import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KINDS = (
    "churn_risk_high",
    "churn_risk_rising",
    "detractor",
    "negative_feedback",
    "low_csat",
    "high_effort",
    "segment_entered",
    "segment_exited",
)


async def simulator(*args: str) -> tuple[int, str, str]:
    # A subprocess on the event loop: the webhook receiver must keep answering meanwhile.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cxm_sim",
        *args,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def nps(scores: list[int]) -> float:
    return round(100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores), 2)


async def test_demo_summary_matches_what_the_apis_return(platform, tmp_path: Path) -> None:
    end = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    namespace = f"e2e{uuid.uuid4().hex[:8]}"
    common = ["--customers", "60", "--weeks", "4", "--seed", "11", "--end", end]
    common += ["--namespace", namespace]
    stream = tmp_path / "events.jsonl"
    code, _, err = await simulator(*common, "--dump", str(stream))
    assert code == 0, err
    events = [json.loads(line) for line in stream.read_text().splitlines()]

    summary_file = tmp_path / "summary.json"
    code, out, err = await simulator(
        *common,
        "--ingest-url",
        platform.urls["ingest"],
        "--profile-url",
        platform.urls["profile"],
        "--alerting-url",
        platform.urls["alerting"],
        "--scoring-url",
        platform.urls["scoring"],
        "--sample",
        "20",
        "--settle-timeout",
        "120",
        "--no-progress",
        "--summary-json",
        str(summary_file),
    )
    print(out)
    assert code == 0, out + err
    summary = json.loads(summary_file.read_text())
    for heading in ("Customers resolved", "Alerts raised", "NPS by channel", "Where to look"):
        assert heading in out
    assert f"{platform.urls['alerting']}/console?team=support&token=dev-api-token" in out

    # Everything generated was sent and accepted once.
    sent = summary["sent"]
    assert sent["sent"] == sent["accepted"] == len(events)
    assert sent["rejected"] == sent["duplicate"] == 0
    assert summary["by_channel"] == dict(Counter(e["channel"] for e in events).most_common())

    # Resolved customers: the profiles the summary names exist and hold what it says.
    resolution = summary["resolution"]
    assert resolution["sampled"] == 20
    assert resolution["one_profile"] == resolution["caught_up"] == 20
    profiles = platform.api["profile"]
    for customer in resolution["customers"]:
        found = await profiles.get(f"/v1/profiles/{customer['customer_id']}")
        assert found.status_code == 200
        assert found.json()["segments"] == customer["segments"]

    # Alerts per team (notified, and suppressed by an inhibition), recounted from the API.
    prefix = f"sim-{namespace}-"
    teams: dict[str, Counter[str]] = defaultdict(Counter)
    for kind in KINDS:
        for alert in await platform.alerts(kind=kind):
            named = [i for e in alert["evidence"] or [] for i in e.get("event_ids", [])]
            if any(i.startswith(prefix) for i in named):
                for team in alert["receivers"]:
                    teams[team]["suppressed" if alert["status"] == "suppressed" else "alerts"] += 1
    assert {t: (c["alerts"], c["suppressed"]) for t, c in teams.items()} == {
        t: (info["alerts"], info["suppressed"]) for t, info in summary["alerts"]["by_team"].items()
    }
    assert summary["alerts"]["by_team"]["support"]["alerts"] > 0  # drifting customers
    # On a fresh platform the service's own count of raised alerts is the same.
    assert summary["alerts"]["raised_during_run"] == {
        t: info["alerts"] for t, info in summary["alerts"]["by_team"].items() if info["alerts"]
    }

    # NPS by channel: the summary's "sent" column is what was sent, and on a fresh platform
    # (under 1,000 responses per channel) the scoring service reports the same figures.
    answers: dict[str, list[int]] = defaultdict(list)
    for e in events:
        if e["type"] == "survey_response" and "nps" in e["properties"]:
            answers[e["channel"]].append(e["properties"]["nps"])
    assert {c: row["nps"] for c, row in summary["nps"]["sent"].items()} == {
        c: nps(s) for c, s in answers.items()
    }
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = await client.get(f"{platform.urls['scoring']}/metrics")
    reported = {
        line.split('value="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.text.splitlines()
        if line.startswith("cxm_scoring_nps{") and 'dimension="channel"' in line
    }
    assert summary["nps"]["platform"] == {c: round(v, 2) for c, v in reported.items()}
    for channel, scores in answers.items():
        assert reported[channel] == pytest.approx(nps(scores), abs=0.01), channel
