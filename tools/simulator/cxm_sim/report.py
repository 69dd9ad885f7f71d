"""After the traffic: ask the platform's APIs what became of it.

Nothing here is taken from the simulator's own expectations except what it sent: resolved
customers come from profile lookups, alerts from the alerting API, the platform's NPS from the
scoring service's metrics. Identifiers are never printed, only customer ids and masked forms.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from cxm_sim.people import Customer

SIGNAL_KINDS = (
    "churn_risk_high",
    "churn_risk_rising",
    "detractor",
    "negative_feedback",
    "low_csat",
    "high_effort",
    "segment_entered",
    "segment_exited",
)
_METRIC = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Sampled:
    """A registered customer whose profile the report checks."""

    index: int
    persona: str
    identifiers: tuple[tuple[str, str], ...]  # (type, value): every value they ever used

    @property
    def user_id(self) -> str:
        return dict(self.identifiers)["user_id"]

    @property
    def types(self) -> set[str]:
        return {t for t, _ in self.identifiers}


def pick_sample(customers: list[Customer], *, size: int, seed: int) -> list[Sampled]:
    registered = [c for c in customers if c.registered]
    chosen = random.Random(f"sample|{seed}").sample(registered, k=min(size, len(registered)))
    out = []
    for c in sorted(chosen, key=lambda c: c.index):
        ids = [(t, v) for t, v in c.identifiers().items() if t not in ("device_id", "anonymous_id")]
        ids += [("device_id", d) for d in c.devices] + [("anonymous_id", b) for b in c.browsers]
        out.append(Sampled(c.index, c.persona, tuple(ids)))
    return out


async def lookup(client: httpx.AsyncClient, type_: str, value: str) -> dict[str, Any] | None:
    response = await client.get("/v1/profiles/lookup", params={"type": type_, "value": value})
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


async def events_scored(client: httpx.AsyncClient, scoring_url: str) -> float | None:
    """Touchpoints the scoring service has handled so far (applied or skipped as duplicates),
    from its metrics; None when they cannot be read. One worker's count only: with several
    scoring workers this is a lower bound, used for the progress bar alone."""
    try:
        response = await client.get(f"{scoring_url.rstrip('/')}/metrics")
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return sum(
        value
        for name in ("cxm_scoring_events_scored_total", "cxm_scoring_events_skipped_total")
        for _, value in parse_metrics(response.text, name)
    )


async def wait_caught_up(
    client: httpx.AsyncClient,
    sample: list[Sampled],
    expected: dict[int, int],
    *,
    timeout: float,
    on_progress: Callable[[set[int]], Any],
) -> tuple[set[int], float]:
    """Poll until every sampled customer's profile shows all their events scored
    (``scores.events_applied``); returns (the caught-up ones, seconds waited)."""
    started = time.monotonic()
    done: set[int] = set()
    gate = asyncio.Semaphore(8)

    async def check(s: Sampled) -> None:
        async with gate:
            profile = await lookup(client, "user_id", s.user_id)
        scores = (profile or {}).get("scores") or {}
        if scores.get("events_applied", 0) >= expected.get(s.index, 0):
            done.add(s.index)

    while True:
        await asyncio.gather(*(check(s) for s in sample if s.index not in done))
        await on_progress(done)
        if len(done) == len(sample) or time.monotonic() - started > timeout:
            return done, time.monotonic() - started
        await asyncio.sleep(2.0)


async def resolution(client: httpx.AsyncClient, sample: list[Sampled]) -> list[dict[str, Any]]:
    """Per sampled customer: do all their identifiers lead to one profile holding them?"""
    gate = asyncio.Semaphore(8)

    async def one(s: Sampled) -> dict[str, Any]:
        async with gate:
            found = [await lookup(client, t, v) for t, v in s.identifiers]
        ids = {p["customer_id"] for p in found if p}
        profile = next((p for p in found if p), None) or {}
        held = {i["type"] for i in profile.get("identifiers", [])}
        scores = profile.get("scores") or {}
        return {
            "index": s.index,
            "persona": s.persona,
            "customer_id": profile.get("customer_id"),
            "one_profile": len(ids) == 1 and all(found) and s.types <= held,
            "profiles": len(ids),
            "missing": sum(1 for p in found if p is None),
            "merged_ids": len(profile.get("merged_ids", [])),
            "segments": list(profile.get("segments", [])),
            "churn_risk": scores.get("churn_risk"),
            "nps_latest": ((scores.get("nps") or {}).get("latest") or {}).get("score"),
        }

    return list(await asyncio.gather(*(one(s) for s in sample)))


def _of_run(alert: dict[str, Any], prefix: str) -> bool:
    for entry in alert.get("evidence") or []:
        if isinstance(entry, dict):
            if any(str(e).startswith(prefix) for e in entry.get("event_ids") or []):
                return True
    return False


async def alerts_of_run(client: httpx.AsyncClient, prefix: str) -> tuple[list[dict], bool]:
    """Alerts whose evidence names this run's events; ``capped`` when a listing was full
    (the API returns at most 1,000 per query)."""
    found: list[dict[str, Any]] = []
    capped = False
    for kind in SIGNAL_KINDS:
        response = await client.get("/v1/alerts", params={"kind": kind, "limit": 1000})
        response.raise_for_status()
        page = response.json()
        capped = capped or len(page) >= 1000
        found.extend(a for a in page if _of_run(a, prefix))
    return found, capped


async def wait_alerts_quiet(
    client: httpx.AsyncClient, prefix: str, *, timeout: float
) -> tuple[list[dict], bool]:
    """The run's alerts once their number stops changing (two equal reads 2 s apart)."""
    deadline = time.monotonic() + timeout
    alerts, capped = await alerts_of_run(client, prefix)
    while time.monotonic() < deadline:
        await asyncio.sleep(2.0)
        again, capped = await alerts_of_run(client, prefix)
        if len(again) == len(alerts):
            return again, capped
        alerts = again
    return alerts, capped


def alerts_by_team(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Alerts per team (every receiver an alert reached), by kind; ``suppressed`` ones (muted
    by an inhibition or a silence: nobody was notified) are counted apart."""
    teams: dict[str, Counter[str]] = {}
    muted: Counter[str] = Counter()
    for alert in alerts:
        for team in alert.get("receivers") or [alert.get("team")]:
            if alert.get("status") == "suppressed":
                muted[team] += 1
            else:
                teams.setdefault(team, Counter())[alert["kind"]] += 1
    return {
        team: {
            "alerts": sum(teams.get(team, Counter()).values()),
            "by_kind": dict(teams.get(team, Counter()).most_common()),
            "suppressed": muted[team],
        }
        for team in sorted(set(teams) | set(muted))
    }


def parse_metrics(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        match = _METRIC.match(line)
        if match and match["name"] == name:
            out.append((dict(_LABEL.findall(match["labels"])), float(match["value"])))
    return out


async def alerts_raised(client: httpx.AsyncClient, alerting_url: str) -> Counter[str] | None:
    """Alerts opened or re-opened per (first) team since the alerting process started, from
    its metrics; None when they cannot be read."""
    try:
        response = await client.get(f"{alerting_url.rstrip('/')}/metrics")
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    raised: Counter[str] = Counter()
    for labels, value in parse_metrics(response.text, "cxm_alerting_alerts_raised_total"):
        raised[labels.get("team", "?")] += int(value)
    return raised


async def platform_nps(client: httpx.AsyncClient, scoring_url: str) -> dict[str, float] | None:
    """NPS by channel as the scoring service exports it (rolling, last 1,000 responses per
    channel and worker); None when the metrics cannot be read."""
    try:
        response = await client.get(f"{scoring_url.rstrip('/')}/metrics")
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return {
        labels["value"]: round(value, 2)
        for labels, value in parse_metrics(response.text, "cxm_scoring_nps")
        if labels.get("dimension") == "channel" and "value" in labels
    }


def example_alert(alerts: list[dict[str, Any]], team: str) -> dict[str, Any] | None:
    """The team's alert with the longest cross-channel journey attached."""
    mine = [a for a in alerts if team in (a.get("receivers") or [])]
    if not mine:
        return None
    return max(
        mine,
        key=lambda a: (
            len({t.get("channel") for t in a.get("last_touchpoints") or []}),
            a["alert_id"],
        ),
    )


# -- rendering --------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def render(summary: dict[str, Any]) -> str:
    run, sent, urls = summary["run"], summary["sent"], summary["urls"]
    lines = [
        "",
        f"CXM demo: {run['customers']:,} customers over {run['weeks']} weeks "
        f"(seed {run['seed']}, namespace {run['namespace']}, period "
        f"{run['start'][:10]} .. {run['end'][:10]})",
    ]
    if run["report_only"]:
        lines.append(f"  report only: nothing sent now ({_n(run['events'])} events in this run)")
    else:
        lines.append(
            f"  sent {_n(sent['sent'])} events in {sent['seconds']:.1f} s "
            f"({_n(sent['events_per_second'])} events/s, {sent['requests']:,} requests, "
            f"{sent['retries']} retries): accepted {_n(sent['accepted'])}, duplicate "
            f"{_n(sent['duplicate'])}, rejected {_n(sent['rejected'])}"
        )
    if sent["duplicate"] and not sent["accepted"]:
        lines.append(
            "  (every event was already there: this seed and namespace were sent before; "
            "pass --namespace or another --seed for new customers)"
        )
    for rejection in sent["rejections"][:3]:
        lines.append(f"  rejected: {rejection}")
    lines.append("  personas: " + ", ".join(f"{k} {v:,}" for k, v in summary["personas"].items()))
    lines.append(
        "  by channel: " + ", ".join(f"{k} {v:,}" for k, v in summary["by_channel"].items())
    )
    lines.append(
        "  comments: " + ", ".join(f"{k} {v:,}" for k, v in summary["comments_by_language"].items())
    )

    res = summary["resolution"]
    lines += [
        "",
        f"Customers resolved (profile API lookups, sample of {res['sampled']} registered "
        "customers)",
        f"  {res['one_profile']}/{res['sampled']} are one profile holding every identifier they "
        "used (" + ", ".join(res["identifier_types"]) + ")",
        f"  caught up (all their events scored): {res['caught_up']}/{res['sampled']} "
        f"after {res['settle_seconds']:.1f} s; on average "
        f"{res['mean_merged_ids']:.1f} earlier profiles (anonymous visits) merged into each",
    ]
    if res["caught_up"] < res["sampled"]:
        lines.append(
            "  the platform is still catching up: the figures below are partial; run the same "
            "command with --report-only later for the final ones"
        )
    if res["segments"]:
        lines.append(
            "  segments in the sample: " + ", ".join(f"{k} {v}" for k, v in res["segments"].items())
        )

    alerts = summary["alerts"]
    lines += ["", "Alerts raised for these customers (alerting API), by team"]
    if not alerts["by_team"]:
        lines.append("  none yet")
    for team, info in alerts["by_team"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in info["by_kind"].items())
        muted = f"; {info['suppressed']:,} more suppressed" if info["suppressed"] else ""
        lines.append(f"  {team:<10} {info['alerts']:>6,}  ({kinds}{muted})")
    if alerts["capped"]:
        lines.append("  (a listing hit the API's 1,000-alert page: counts are lower bounds)")
    if alerts.get("raised_during_run"):
        lines.append(
            "  alerting /metrics, raised while this run was sent and processed: "
            + ", ".join(f"{t} {n:,}" for t, n in sorted(alerts["raised_during_run"].items()))
        )

    lines += ["", "NPS by channel       sent (answers)     platform (scoring /metrics, rolling)"]
    platform = summary["nps"]["platform"]
    for channel, row in summary["nps"]["sent"].items():
        shown = "-" if platform is None or channel not in platform else f"{platform[channel]:.1f}"
        sent_nps = "-" if row["nps"] is None else f"{row['nps']:.1f}"
        lines.append(f"  {channel:<14} {sent_nps:>8} ({row['nps_answers']:>5,})   {shown:>8}")
    if platform is None:
        lines.append("  (scoring metrics not reachable: pass --scoring-url)")
    else:
        lines.append(
            "  platform figures cover each channel's last 1,000 responses and any earlier "
            "traffic; they equal the sent ones on a fresh platform below that size"
        )

    lines += ["", "Where to look"]
    example = summary.get("example")
    token = summary["token_hint"]
    auth = f"-H 'Authorization: Bearer {token}'"
    if example:
        cid = example["customer_id"]
        lines += [
            f"  a {example['persona']} customer ({example['why']}):",
            f"    curl {auth} {urls['profile']}/v1/profiles/{cid}",
            f"    curl {auth} {urls['profile']}/v1/profiles/{cid}/timeline",
        ]
    if summary.get("example_alert"):
        lines.append(
            f"  an alert with its journey:  curl {auth} "
            f"{urls['alerting']}/v1/alerts/{summary['example_alert']}"
        )
    lines += [
        f"  alert console (support):    {urls['alerting']}/console?team=support&token={token}",
        f"  live alert stream (SSE):    curl -N {auth} {urls['alerting']}/v1/teams/support/stream",
        f"  API docs:                   {urls['profile']}/docs  {urls['alerting']}/docs",
        "  dashboards:                 Grafana http://127.0.0.1:3000 and Prometheus "
        "http://127.0.0.1:9090 (docker compose); raw metrics at each service's /metrics",
        "",
    ]
    return "\n".join(lines)
