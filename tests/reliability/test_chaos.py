"""The reduced chaos run (``make chaos`` is the big one): the whole platform on a private
Kafka broker and PostgreSQL cluster, two profile and two scoring workers, a few thousand
simulated events, and meanwhile one SIGKILL of each service (ingest, a profile worker, a
scoring worker, alerting) plus one kill -9 and restart each of the broker and the database.
Every event the ingest acknowledged must be in exactly one timeline, counted once in the
scores and, where it qualifies, raise its alert once; nothing rejected or never sent may show
up anywhere. See tools/chaos/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxm_chaos.report import table, write
from cxm_chaos.run import ChaosConfig, run_chaos
from cxm_chaos.services import SERVICES

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

CI_RUN = ChaosConfig(
    customers=120,
    weeks=3,  # ~2,600 events
    seed=9,
    rate=45.0,  # ~60 s of load: room for six kills ~8 s apart
    kill_rounds=1,
    first_kill_after=8.0,
    drain_timeout=180.0,
    recheck=2,
)


async def test_nothing_acknowledged_is_lost_double_counted_or_invented_under_kill_9(
    kafka_bootstrap: str,  # the shared broker's install step fetched the jars reused here
    tmp_path: Path,
) -> None:
    report = await run_chaos(CI_RUN, log=lambda line: print(f"[chaos] {line}", flush=True))
    write(report, json_path=tmp_path / "chaos.json", markdown_path=tmp_path / "chaos.md")
    print(table(report))

    assert report["events"]["generated"] >= 2000
    assert report["events"]["rejected"] > 0, "the invalid events were not sent"
    assert report["kills"] == {s: 1 for s in SERVICES}, report["kills"]
    assert report["restarts"] == {"kafka": 1, "postgres": 1}, report["restarts"]
    assert all(k["ready_s"] is not None for k in report["recovery"]), report["recovery"]
    findings = json.dumps(report["findings"]["by_place"], indent=1)[:4000]
    assert report["drained"], f"the pipeline did not drain; run kept in {report['run_dir']}"
    assert (report["lost"], report["double_applied"], report["phantom"]) == (0, 0, 0), findings
    unexpected = [e for e in report["self_exits"] if not e["after_infra_restart"]]
    assert not unexpected, unexpected
