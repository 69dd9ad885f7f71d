"""The killer: SIGKILL a service process (or the broker, or the database) at random moments,
start it again, and time the recovery.

Recovery of one kill is measured two ways, from the moment of the kill:

- ``ready_s``: until the restarted process answers ``/readyz`` (for the broker and the
  database: until every service process does again);
- ``caught_up_s``: until the platform's consumer lag (every consumer group, every partition,
  summed) is back to where it was just before the kill, or below one second of traffic,
  whichever is larger: the load keeps running, so the backlog the outage built up must be
  worked off, not just the process restarted. ``None`` when that did not happen before the
  run's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cxm_chaos.infra import PrivateInfra
from cxm_chaos.services import SERVICES, Fleet
from cxm_shared.lag import OffsetsReader

INFRA_TARGETS = ("kafka", "postgres")


@dataclass
class LagMonitor:
    """Total consumer lag of the platform, sampled about once a second."""

    bootstrap: str
    prefix: str
    samples: list[tuple[float, int | None]] = field(default_factory=list)
    # (group, topic, partition) -> lag, of the latest sample: where a backlog sits
    behind: dict[str, int] = field(default_factory=dict)

    async def run(self, every: float = 1.0) -> None:
        reader = OffsetsReader(self.bootstrap, prefix=self.prefix)
        try:
            while True:
                at = time.monotonic()
                try:
                    snapshot = await asyncio.wait_for(reader.read(), 10)
                    lags = list(snapshot.lags())
                    total: int | None = sum(lag for *_, lag in lags)
                    self.behind = {f"{g} {t}[{p}]": lag for g, t, p, lag in lags if lag}
                except Exception:  # the broker is down or restarting: no sample
                    total = None
                    with contextlib.suppress(Exception):
                        await reader.close()
                self.samples.append((at, total))
                await asyncio.sleep(max(0.0, every - (time.monotonic() - at)))
        finally:
            with contextlib.suppress(Exception):
                await reader.close()

    def latest(self) -> int | None:
        for _, total in reversed(self.samples):
            if total is not None:
                return total
        return None

    def zero_for(self, seconds: float) -> bool:
        """The lag has been 0 in every sample of the last ``seconds`` or more (at least two
        samples: on a busy machine one poll can take longer than a second)."""
        since = None
        count = 0
        for at, total in reversed(self.samples):
            if total is None:
                continue
            if total != 0:
                break
            since, count = at, count + 1
        return since is not None and count >= 2 and since <= time.monotonic() - seconds


@dataclass
class Kill:
    target: str  # service label (scoring-2), "kafka" or "postgres"
    service: str  # ingest / profile / scoring / alerting / kafka / postgres
    at: float  # monotonic
    wall: float
    lag_before: int | None
    ready_s: float | None = None
    caught_up_s: float | None = None
    error: str | None = None
    # service processes that exited while the broker or database was down
    exited_with_it: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("at")
        return out


def plan_kills(*, rounds: int, rng: random.Random) -> list[str]:
    """``rounds`` kills of each service in random order, with one broker and one database
    restart at random places (not first: the platform has to be under way)."""
    plan: list[str] = []
    for _ in range(rounds):
        services = list(SERVICES)
        rng.shuffle(services)
        plan.extend(services)
    for target in INFRA_TARGETS:
        plan.insert(rng.randint(1, len(plan)), target)
    return plan


@dataclass
class Killer:
    fleet: Fleet
    infra: PrivateInfra
    lag: LagMonitor
    rng: random.Random
    traffic_per_s: float
    kills: list[Kill] = field(default_factory=list)
    recoveries: list[asyncio.Task[None]] = field(default_factory=list)
    catching_up: list[asyncio.Task[None]] = field(default_factory=list)
    log: Any = print

    async def wait_recovered(self, timeout: float) -> None:
        """Until every killed process answers /readyz again (caught-up times keep being
        measured in the background)."""
        pending = [t for t in self.recoveries if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def cancel(self) -> None:
        for task in (*self.recoveries, *self.catching_up):
            task.cancel()

    async def run(self, plan: list[str], *, start_after: float, gap: float) -> None:
        await asyncio.sleep(start_after)
        for target in plan:
            # a random moment: the gap with +-50 % jitter
            await asyncio.sleep(gap * self.rng.uniform(0.5, 1.5))
            await self.kill_one(target)

    async def kill_one(self, target: str) -> Kill:
        if target in INFRA_TARGETS:
            kill = Kill(target, target, time.monotonic(), time.time(), self.lag.latest())
            self.kills.append(kill)
            self.log(f"kill -9 {target}")
            # every process may crash while its dependency is gone: not the supervisor's
            # business until the dependency is back
            self.fleet.held.update(p.label for p in self.fleet.processes)
            try:
                await asyncio.to_thread(getattr(self.infra, f"kill_{target}"))
                await asyncio.sleep(self.rng.uniform(1.0, 3.0))  # down for a moment
                await asyncio.to_thread(getattr(self.infra, f"start_{target}"))
            except Exception as exc:
                kill.error = f"{type(exc).__name__}: {exc}"[:500]
                self.log(f"  {target}: {kill.error}")
            finally:
                # a service that crashed while its dependency was gone is started again here
                # (crashing is how a worker hands its partitions back): counted on the kill
                for p in self.fleet.processes:
                    if not p.running():
                        kill.exited_with_it.append(p.label)
                        p.start()
                self.fleet.held.clear()
            watched = list(self.fleet.processes)
        else:
            process = self.rng.choice(self.fleet.of(target))
            kill = Kill(process.label, target, time.monotonic(), time.time(), self.lag.latest())
            self.kills.append(kill)
            self.log(f"kill -9 {process.label}")
            self.fleet.held.add(process.label)
            try:
                if process.running():
                    await asyncio.to_thread(process.kill)
                process.start()
            finally:
                self.fleet.held.discard(process.label)
            watched = [process]
        # measured meanwhile: the next kill does not wait for this recovery
        self.recoveries.append(asyncio.create_task(self._recover(kill, watched)))
        return kill

    async def _recover(self, kill: Kill, watched: list[Any]) -> None:
        try:
            await self.fleet.wait_ready(watched, timeout=600)
            kill.ready_s = time.monotonic() - kill.at
        except TimeoutError as exc:
            kill.error = (kill.error or "") + f" not ready: {str(exc)[:300]}"
        self.log(f"  {kill.target} ready {kill.ready_s or float('nan'):.1f}s after its kill")
        self.catching_up.append(asyncio.create_task(self._caught_up(kill)))

    async def _caught_up(self, kill: Kill, timeout: float = 900) -> None:
        threshold = max(kill.lag_before or 0, int(self.traffic_per_s))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready_at = kill.at + (kill.ready_s or 0)
            for at, total in self.lag.samples:
                if at >= ready_at and total is not None and total <= threshold:
                    kill.caught_up_s = at - kill.at
                    return
            await asyncio.sleep(1)
