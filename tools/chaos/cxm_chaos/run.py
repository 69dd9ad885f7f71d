"""One chaos run: private infrastructure, the platform, load + killer, drain, check, report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cxm_chaos.check import check
from cxm_chaos.infra import PrivateInfra
from cxm_chaos.killer import INFRA_TARGETS, Killer, LagMonitor, plan_kills
from cxm_chaos.load import Ledger, count_events, planned_batches, run_load
from cxm_chaos.services import SERVICES, TOKEN, WRITE_KEY, build_fleet


@dataclass(frozen=True)
class ChaosConfig:
    customers: int = 150
    weeks: int = 3
    seed: int = 9
    rate: float = 40.0  # events/s offered by the load generator
    kill_rounds: int = 1  # kills of each service
    first_kill_after: float = 8.0  # seconds of load before the first kill
    profile_workers: int = 2
    scoring_workers: int = 2
    partitions: int = 4
    batch: int = 100
    concurrency: int = 4
    invalid_every: int = 5  # every n-th batch carries one invalid event
    drain_timeout: float = 300.0
    recheck: int = 3  # re-checks (10 s apart) while findings keep changing
    home: str | None = None
    keep: bool = False  # keep the run's data and logs (always kept when something failed)


def _machine(load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": list(load_at_start),
        "load_1m_at_end": load1,
        "load_5m_at_end": load5,
    }


def _after_infra(at: float, kills: list[Any], *, grace: float = 60.0) -> bool:
    """An exit within a minute of the broker or database coming back is the designed
    reaction to losing it (crash, let Kafka redeliver), not a failure of its own."""
    return any(
        k.service in INFRA_TARGETS and k.wall <= at <= k.wall + (k.ready_s or 0) + grace
        for k in kills
    )


async def _drain(fleet: Any, lag: LagMonitor, *, timeout: float) -> bool:
    """Every process ready and the lag 0 for 5 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            await fleet.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
        if lag.zero_for(5):
            return True
        await asyncio.sleep(1)
    return False


async def run_chaos(config: ChaosConfig, *, log: Any = print) -> dict[str, Any]:
    started = time.monotonic()
    load_at_start = os.getloadavg()
    home = Path(config.home or tempfile.mkdtemp(prefix="cxm-chaos-"))
    await asyncio.to_thread(home.mkdir, parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    namespace = f"chaos{config.seed}-{os.urandom(3).hex()}"
    infra = PrivateInfra(home)
    timings: dict[str, float] = {}
    ok = False
    fleet = None
    tasks: list[asyncio.Task[Any]] = []
    log(f"chaos run in {home}")
    try:
        await asyncio.to_thread(infra.start)
        timings["infra_start_s"] = time.monotonic() - started
        log(f"private kafka {infra.bootstrap}, postgres :{infra.pg_port}")
        fleet = build_fleet(
            home=home,
            bootstrap=infra.bootstrap,
            database_url=infra.database_url,
            workers={"profile": config.profile_workers, "scoring": config.scoring_workers},
            partitions=config.partitions,
        )
        fleet.start_all()
        await fleet.wait_ready(timeout=300)
        timings["platform_start_s"] = time.monotonic() - started - timings["infra_start_s"]
        log(f"{len(fleet.processes)} service processes ready")

        lag = LagMonitor(infra.bootstrap, fleet.prefix)
        tasks.append(asyncio.create_task(lag.run()))
        tasks.append(asyncio.create_task(fleet.supervise()))
        events = count_events(
            customers=config.customers, weeks=config.weeks, seed=config.seed, namespace=namespace
        )
        load_s = events / config.rate
        plan = plan_kills(rounds=config.kill_rounds, rng=rng)
        # the kills spread over the load, the last well before its end
        gap = max(2.0, (load_s - config.first_kill_after) / (len(plan) + 1))
        log(f"{events} events at {config.rate:.0f}/s (~{load_s:.0f}s); kills {plan}, ~{gap:.0f}s")
        ledger = Ledger()
        killer = Killer(fleet, infra, lag, rng, traffic_per_s=config.rate, log=log)
        load_started = time.monotonic()
        load = asyncio.create_task(
            run_load(
                ingest_url=fleet.first("ingest").url,
                write_key=WRITE_KEY,
                batches=planned_batches(
                    customers=config.customers,
                    weeks=config.weeks,
                    seed=config.seed,
                    namespace=namespace,
                    batch=config.batch,
                    invalid_every=config.invalid_every,
                ),
                ledger=ledger,
                rate=config.rate,
                concurrency=config.concurrency,
            )
        )
        kills = asyncio.create_task(
            killer.run(plan, start_after=config.first_kill_after - gap, gap=gap)
        )
        try:
            await asyncio.gather(load, kills)
            timings["load_s"] = time.monotonic() - load_started
            await killer.wait_recovered(timeout=config.drain_timeout)
        except BaseException:
            killer.cancel()
            raise
        log(f"load done: {ledger.counts()}; draining")
        lag_at_load_end = dict(lag.behind)
        drain_started = time.monotonic()
        drained = await _drain(fleet, lag, timeout=config.drain_timeout)
        timings["drain_s"] = time.monotonic() - drain_started
        log(f"drained={drained} after {timings['drain_s']:.0f}s (lag: {lag.behind}); checking")

        check_started = time.monotonic()
        profile_url = fleet.first("profile").url
        alerting_url = fleet.first("alerting").url
        history = []
        findings = None
        for attempt in range(config.recheck + 2):
            try:
                found = await check(
                    ledger=ledger,
                    profile_url=profile_url,
                    alerting_url=alerting_url,
                    token=TOKEN,
                    database_url=infra.database_url,
                    bootstrap=infra.bootstrap,
                    changelog=f"{fleet.prefix}cxm-scoring-experience_by_customer-changelog",
                )
            except Exception as exc:  # an API that would not answer: look again, then give up
                log(f"check {attempt + 1} failed: {type(exc).__name__}: {exc}")
                if attempt == config.recheck + 1:
                    raise
                await asyncio.sleep(10)
                continue
            findings = found
            history.append(findings.totals())
            log(f"check {attempt + 1}: {findings.totals()}")
            if not any(history[-1].values()) or (len(history) > 1 and history[-1] == history[-2]):
                break
            await asyncio.sleep(10)  # something may still be on its way: look again
        assert findings is not None
        timings["check_s"] = time.monotonic() - check_started
        killer.cancel()
        timings["total_s"] = time.monotonic() - started
        ledger.write(home / "ledger.jsonl")

        kills_per = Counter(k.service for k in killer.kills)
        acked = findings.counts["acknowledged"]
        pipeline_s = timings["load_s"] + timings["drain_s"]
        report = {
            "config": asdict(config),
            "machine": _machine(load_at_start),
            "events": {
                "generated": len(ledger.events),
                "acknowledged": acked,
                "rejected": findings.counts["rejected"],
                "requests": ledger.requests,
                "retried_requests": ledger.retries,
                "answers": ledger.answers,
            },
            "kills": {s: kills_per.get(s, 0) for s in SERVICES},
            "restarts": {t: kills_per.get(t, 0) for t in INFRA_TARGETS},
            "self_exits": [
                {
                    "process": e.label,
                    "returncode": e.returncode,
                    "after_infra_restart": _after_infra(e.at, killer.kills),
                    "log_tail": e.tail[-1500:],
                }
                for e in fleet.self_exits
            ],
            "drained": drained,
            "lag_at_load_end": lag_at_load_end,
            "lag_at_check": lag.behind,
            "lost": findings.totals()["lost"],
            "double_applied": findings.totals()["double_applied"],
            "phantom": findings.totals()["phantom"],
            "findings": findings.as_dict(),
            "check_history": history,
            "recovery": [k.as_dict() for k in killer.kills],
            "throughput_events_per_s": {
                "offered": config.rate,
                "acknowledged_during_load": acked / timings["load_s"],
                "end_to_end": acked / pipeline_s,
            },
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "run_dir": str(home),
        }
        unexpected = [e for e in report["self_exits"] if not e["after_infra_restart"]]
        ok = drained and not any(history[-1].values()) and not unexpected
        report["ok"] = ok
        return report
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if fleet is not None:
            await asyncio.to_thread(fleet.stop_all)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(infra.stop)
        if ok and not config.keep:
            shutil.rmtree(home, ignore_errors=True)
        else:
            log(f"run data and logs kept in {home}")
