"""``python -m cxm_chaos``: one chaos run, its table printed and written to a report."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from cxm_chaos.report import table, write
from cxm_chaos.run import ChaosConfig, run_chaos


def parse(argv: list[str] | None) -> argparse.Namespace:
    d = ChaosConfig()
    p = argparse.ArgumentParser(
        prog="python -m cxm_chaos",
        description="Run the whole platform on a private Kafka and PostgreSQL, send simulated "
        "traffic while killing services (SIGKILL), the broker and the database, then compare "
        "what was acknowledged with what the platform shows: lost / double-applied / phantom.",
    )
    p.add_argument("--customers", type=int, default=d.customers)
    p.add_argument("--weeks", type=int, default=d.weeks)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--rate", type=float, default=d.rate, help="events/s offered")
    p.add_argument("--kill-rounds", type=int, default=d.kill_rounds, help="kills per service")
    p.add_argument("--first-kill-after", type=float, default=d.first_kill_after)
    p.add_argument("--profile-workers", type=int, default=d.profile_workers)
    p.add_argument("--scoring-workers", type=int, default=d.scoring_workers)
    p.add_argument("--partitions", type=int, default=d.partitions)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout)
    p.add_argument("--home", help="run directory (default: a new one under the temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the run directory")
    p.add_argument("--json", type=Path, default=Path("bench/results/chaos.json"))
    p.add_argument("--markdown", type=Path, default=Path("bench/results/chaos.md"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    config = ChaosConfig(
        customers=args.customers,
        weeks=args.weeks,
        seed=args.seed,
        rate=args.rate,
        kill_rounds=args.kill_rounds,
        first_kill_after=args.first_kill_after,
        profile_workers=args.profile_workers,
        scoring_workers=args.scoring_workers,
        partitions=args.partitions,
        batch=args.batch,
        concurrency=args.concurrency,
        drain_timeout=args.drain_timeout,
        home=args.home,
        keep=args.keep,
    )

    def log(message: str) -> None:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # the lag monitor keeps asking while the broker is down on purpose: no reconnect noise
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    report = asyncio.run(run_chaos(config, log=log))
    write(report, json_path=args.json, markdown_path=args.markdown)
    print(table(report))
    print(f"report: {args.json}, {args.markdown}")
    return 0 if report["ok"] else 1
