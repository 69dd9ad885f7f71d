"""Command line: generate the journeys, post them with a progress bar, then report what the
platform made of them.

Exit status: 0 done; 1 the traffic could not be sent (platform down, key refused) or the
ingest rejected events; 3 the platform had not caught up within ``--settle-timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from cxm_sim import report
from cxm_sim.journeys import SimConfig, World, default_namespace
from cxm_sim.send import SendError, SendStats, send_all, split_batches
from cxm_sim.tally import Tally

DEV_API_TOKEN = "dev-api-token"


NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def iso_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m cxm_sim",
        description="Drive realistic customer journeys (web, app, store, call center, chat, "
        "delivery, surveys; Japanese and English feedback) into a running CXM platform, then "
        "report what its APIs show.",
    )
    p.add_argument("--customers", type=int, default=2000, help="size of the base (2000)")
    p.add_argument("--weeks", type=int, default=8, help="simulated weeks (8)")
    p.add_argument("--seed", type=int, default=7, help="same seed, same event stream (7)")
    p.add_argument(
        "--end",
        type=iso_time,
        default=None,
        help="end of the simulated period (ISO date/time, UTC unless an offset is given); "
        "default: today 00:00 UTC",
    )
    p.add_argument(
        "--namespace",
        default=None,
        help="tag in every identifier and event id (default: from seed, customers, weeks and "
        "end date), so runs with different tags never share customers",
    )
    p.add_argument("--ingest-url", default="http://127.0.0.1:8001")
    p.add_argument("--profile-url", default="http://127.0.0.1:8002")
    p.add_argument("--alerting-url", default="http://127.0.0.1:8004")
    p.add_argument(
        "--scoring-url", default="http://127.0.0.1:8003", help="read for the platform's NPS"
    )
    p.add_argument("--write-key", default="dev-write-key", help="ingest write key")
    p.add_argument("--api-token", default=DEV_API_TOKEN, help="profile/alerting API token")
    p.add_argument("--batch-size", type=int, default=500, help="events per request (500)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    p.add_argument("--rate", type=float, default=None, help="events/s (default: unpaced)")
    p.add_argument("--sample", type=int, default=40, help="customers checked in the APIs (40)")
    p.add_argument(
        "--settle-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the platform to catch up (300)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="send nothing: report on a run sent earlier with the same options (for a large "
        "run that outlasted --settle-timeout)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--summary-json", type=Path, default=None, help="also write the summary here")
    p.add_argument(
        "--dump",
        type=Path,
        default=None,
        help="write the event stream as JSON lines to this file and send nothing",
    )
    args = p.parse_args(argv)
    if args.customers < 1 or args.weeks < 1:
        p.error("--customers and --weeks must be at least 1")
    if not 1 <= args.batch_size <= 2500:
        p.error("--batch-size must be between 1 and 2500 (the ingest's limit)")
    if args.concurrency < 1:
        p.error("--concurrency must be at least 1")
    if args.end is None:
        args.end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if args.end > datetime.now(UTC) + timedelta(minutes=1):
        p.error("--end must not be in the future (the ingest refuses future events)")
    if args.namespace is not None and not NAMESPACE.match(args.namespace):
        p.error("--namespace: lowercase letters, digits and '-', at most 40 characters")
    if args.namespace is None:
        args.namespace = default_namespace(
            seed=args.seed, customers=args.customers, weeks=args.weeks, end=args.end
        )
    return args


def config_of(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        customers=args.customers,
        weeks=args.weeks,
        seed=args.seed,
        end=args.end,
        namespace=args.namespace,
    )


def dump(world: World, path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for planned in world.events():
            out.write(json.dumps(planned.event, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


async def ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"{url.rstrip('/')}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


async def run(args: argparse.Namespace) -> int:
    world = World(config_of(args))
    if args.dump is not None:
        count = dump(world, args.dump)
        print(f"wrote {count:,} events to {args.dump}")
        return 0
    for name, url in (
        ("ingest", args.ingest_url),
        ("profile", args.profile_url),
        ("alerting", args.alerting_url),
    ):
        if not await ready(url):
            print(
                f"{name} at {url} is not ready (GET /readyz); start the platform first "
                "(make up) or pass --{name}-url",
                file=sys.stderr,
            )
            return 1

    tally = Tally()
    if args.report_only:
        for item in world.events():
            tally.add(item)
        stats = SendStats()
        return await settle_and_report(
            args, world, tally, stats, seconds=0.0, scored_before=None, raised_before=None
        )
    bar = tqdm(total=0, unit="ev", desc="sending", disable=args.no_progress, file=sys.stderr)

    async def batches() -> AsyncIterator[list[dict[str, Any]]]:
        weeks = world.weeks()
        for week in range(1, args.weeks + 1):
            # Generating a week takes a moment: do it off the loop so requests keep flowing.
            planned = await asyncio.to_thread(next, weeks)
            for item in planned:
                tally.add(item)
            bar.total += len(planned)
            bar.set_description(f"sending week {week}/{args.weeks}")
            bar.refresh()
            for chunk in split_batches([p.event for p in planned], size=args.batch_size):
                yield chunk

    async with httpx.AsyncClient(timeout=10) as plain:
        scored_before = await report.events_scored(plain, args.scoring_url)
        raised_before = await report.alerts_raised(plain, args.alerting_url)
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(
            base_url=args.ingest_url, auth=(args.write_key, ""), timeout=60
        ) as ingest:
            stats = await send_all(
                batches(),
                client=ingest,
                concurrency=args.concurrency,
                rate=args.rate,
                on_batch=bar.update,
            )
    except SendError as exc:
        bar.close()
        print(f"\nsending failed: {exc}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    bar.close()
    tally.forget(stats.rejected_ids)
    return await settle_and_report(
        args,
        world,
        tally,
        stats,
        seconds=seconds,
        scored_before=scored_before,
        raised_before=raised_before,
    )


async def settle_and_report(
    args: argparse.Namespace,
    world: World,
    tally: Tally,
    stats: SendStats,
    *,
    seconds: float,
    scored_before: float | None,
    raised_before: Counter[str] | None,
) -> int:
    """Wait for the platform to catch up with the sampled customers, then print the summary
    of what its APIs show."""
    headers = {"Authorization": f"Bearer {args.api_token}"}
    sample = report.pick_sample(world.population(), size=args.sample, seed=args.seed)
    expected = {s.index: tally.by_customer[s.index] for s in sample}
    # The bar follows the scoring service's count of handled events; the wait itself ends
    # when the sampled customers' profiles show all their events scored.
    catching = tqdm(
        total=(stats.accepted + stats.duplicate) or tally.events,
        unit="ev",
        desc="platform scoring",
        disable=args.no_progress,
        file=sys.stderr,
    )
    async with (
        httpx.AsyncClient(base_url=args.profile_url, headers=headers, timeout=30) as profile,
        httpx.AsyncClient(base_url=args.alerting_url, headers=headers, timeout=60) as alerting,
        httpx.AsyncClient(timeout=10) as plain,
    ):

        async def progress(done: set[int]) -> None:
            now = await report.events_scored(plain, args.scoring_url)
            if now is not None and scored_before is not None:
                catching.n = min(int(now - scored_before), catching.total)
            catching.set_postfix(sample=f"{len(done)}/{len(sample)} caught up")

        caught_up, waited = await report.wait_caught_up(
            profile, sample, expected, timeout=args.settle_timeout, on_progress=progress
        )
        if len(caught_up) == len(sample):
            catching.n = catching.total
        catching.close()
        resolved = await report.resolution(profile, sample)
        alerts, capped = await report.wait_alerts_quiet(
            alerting, f"sim-{args.namespace}-", timeout=60
        )
        platform_nps = await report.platform_nps(plain, args.scoring_url)
        raised_after = await report.alerts_raised(plain, args.alerting_url)
    raised = None
    if raised_before is not None and raised_after is not None:
        raised = {t: n for t, n in (raised_after - raised_before).items() if n}

    summary = build_summary(
        args,
        world=world,
        sample=sample,
        tally=tally,
        stats=stats.as_dict() | {"seconds": round(seconds, 2)},
        resolved=resolved,
        caught_up=len(caught_up),
        waited=waited,
        alerts=alerts,
        capped=capped,
        raised=raised,
        platform_nps=platform_nps,
    )
    print(report.render(summary))
    if args.summary_json is not None:
        args.summary_json.write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    if stats.rejected:
        return 1
    return 0 if len(caught_up) == len(sample) else 3


def build_summary(
    args: argparse.Namespace,
    *,
    world: World,
    sample: list[report.Sampled],
    tally: Tally,
    stats: dict[str, Any],
    resolved: list[dict[str, Any]],
    caught_up: int,
    waited: float,
    alerts: list[dict[str, Any]],
    capped: bool,
    raised: dict[str, int] | None,
    platform_nps: dict[str, float] | None,
) -> dict[str, Any]:
    segments: dict[str, int] = {}
    for r in resolved:
        for name in r["segments"]:
            segments[name] = segments.get(name, 0) + 1
    example = None
    candidates = [r for r in resolved if r["one_profile"] and r["customer_id"]]
    if candidates:
        best = max(candidates, key=lambda r: (r["churn_risk"] or 0.0, r["index"]))
        why = f"churn risk {best['churn_risk']:.2f}" if best["churn_risk"] is not None else ""
        if best["segments"]:
            why += ("; " if why else "") + "segments " + ", ".join(best["segments"])
        example = {
            "customer_id": best["customer_id"],
            "persona": best["persona"],
            "why": why or "resolved",
        }
    example_alert = report.example_alert(alerts, "support")
    merged = [r["merged_ids"] for r in resolved]
    seconds = stats["seconds"]
    return {
        "run": {
            "customers": args.customers,
            "weeks": args.weeks,
            "seed": args.seed,
            "namespace": args.namespace,
            "report_only": args.report_only,
            "events": tally.events,
            "start": world.config.start.isoformat(),
            "end": world.config.end.isoformat(),
        },
        "urls": {
            "ingest": args.ingest_url,
            "profile": args.profile_url,
            "alerting": args.alerting_url,
            "scoring": args.scoring_url,
        },
        # The dev token may be shown; a real one is never printed.
        "token_hint": args.api_token if args.api_token == DEV_API_TOKEN else "$CXM_API_TOKEN",
        "sent": stats | {"events_per_second": stats["sent"] / seconds if seconds else 0.0},
        "personas": tally.persona_counts(),
        "by_type": dict(tally.by_type.most_common()),
        "by_channel": dict(tally.by_channel.most_common()),
        "comments_by_language": dict(sorted(tally.comments_by_language.items())),
        "resolution": {
            "sampled": len(resolved),
            "one_profile": sum(1 for r in resolved if r["one_profile"]),
            "caught_up": caught_up,
            "settle_seconds": round(waited, 2),
            "mean_merged_ids": sum(merged) / len(merged) if merged else 0.0,
            "identifier_types": sorted({t for s in sample for t in s.types}),
            "segments": dict(sorted(segments.items(), key=lambda kv: (-kv[1], kv[0]))),
            "customers": resolved,
        },
        "alerts": {
            "total": len(alerts),
            "capped": capped,
            "by_team": report.alerts_by_team(alerts),
            "raised_during_run": raised,
        },
        "nps": {"sent": tally.nps_table(), "platform": platform_nps},
        "example": example,
        "example_alert": example_alert["alert_id"] if example_alert else None,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        code = asyncio.run(run(args))
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)
