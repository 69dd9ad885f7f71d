"""Every Grafana panel shows data and every Prometheus rule evaluates, on a real Prometheus
scraping the running platform while traffic flows.

``CXM_OBSERVABILITY=1 deploy/local/stack.sh up`` (what ``make up`` runs, plus the opt-in
observability part) starts Kafka with its JMX exporter agent, PostgreSQL, the four services,
the consumer-lag exporter, Debian's PostgreSQL exporter and Debian's Prometheus, all on private
ports and in a private data directory. Channel systems then post realistic traffic through the
ingest API (surveys with NPS/CSAT/CES and comments in English and Japanese, purchases, store
visits, support contacts, bad events, retries), poison messages land on three topics, and
people act in the profile and alerting APIs (lookups, merges undone, quarantined merges decided,
an erasure, alerts acknowledged after their SLA). While that goes on, every target expression
of every panel in ``deploy/grafana/dashboards/*.json`` (template variables set to "All", i.e.
``.*``) and every rule expression in ``deploy/prometheus/rules/*.yml`` goes through
``/api/v1/query``: a panel or recording rule must return at least one finite value, an alert
expression must evaluate without error, and Prometheus must report every rule healthy and
every scrape target up.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cxm_shared.kafka import make_producer
from cxm_shared.testing.infra import REPO_ROOT
from cxm_shared.topics import Topics

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

SERVICES = ("ingest", "profile", "scoring", "alerting")
DASHBOARDS = REPO_ROOT / "deploy" / "grafana" / "dashboards"
RULES = REPO_ROOT / "deploy" / "prometheus" / "rules"
JOBS = {
    "cxm-ingest",
    "cxm-profile",
    "cxm-scoring",
    "cxm-alerting",
    "cxm-kafka-lag",
    "kafka",
    "postgres",
    "prometheus",
}
# Grafana's built-in variables, as a dashboard opened on "last 15 minutes" would set them.
GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "15m"}
API_TOKEN = {"Authorization": "Bearer dev-api-token"}
STORE_KEY, CALL_CENTER_KEY = "store-pos-test-key", "call-center-test-key"
EVALUATION_DEADLINE_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


# -- what is evaluated ---------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    where: str  # dashboard / panel / refId, or rule file / rule name
    expr: str
    must_return_data: bool


def substitute(expr: str) -> str:
    """Grafana's variables: built-ins as above, dashboard variables as "All" (``.*``)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return GRAFANA_VARIABLES.get(name, ".*")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def dashboards() -> list[dict[str, Any]]:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS}"
    return [json.loads(f.read_text()) for f in files]


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))  # collapsed rows nest their panels


def panel_expressions() -> list[Expression]:
    found = []
    for board in dashboards():
        for panel in all_panels(board["panels"]):
            if panel["type"] == "row":
                continue
            targets = panel.get("targets", [])
            assert targets, f"{board['title']} / {panel['title']}: a panel without a query"
            for target in targets:
                where = f"{board['title']} / {panel['title']} / {target['refId']}"
                found.append(Expression(where, substitute(target["expr"]), True))
    return found


def variable_queries() -> list[tuple[str, str, str]]:
    """(where, selector, label) of every ``label_values(selector, label)`` variable."""
    found = []
    for board in dashboards():
        for var in board.get("templating", {}).get("list", []):
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
            assert match, f"{board['title']} / ${var['name']}: unsupported query {query!r}"
            found.append((f"{board['title']} / ${var['name']}", match[1], match[2]))
    return found


def rule_expressions() -> list[Expression]:
    found = []
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule["alert"]
                where = f"{path.name} / {group['name']} / {name}"
                found.append(Expression(where, rule["expr"], "record" in rule))
    return found


class Prometheus:
    def __init__(self, client: httpx.AsyncClient, base: str) -> None:
        self.client = client
        self.base = base

    async def query(self, expr: str) -> dict[str, Any]:
        response = await self.client.get(f"{self.base}/api/v1/query", params={"query": expr})
        return response.json()

    async def problem(self, item: Expression) -> str | None:
        """None when the expression is fine, else what is wrong with it."""
        body = await self.query(item.expr)
        if body.get("status") != "success":
            return f"error: {body.get('errorType')}: {body.get('error')}"
        if not item.must_return_data:
            return None
        data = body["data"]
        if data["resultType"] == "scalar":
            values = [data["result"][1]]
        elif data["resultType"] == "vector":
            values = [sample["value"][1] for sample in data["result"]]
        else:
            return f"unexpected result type {data['resultType']}"
        if not values:
            return "no data"
        if not any(math.isfinite(float(v)) for v in values):
            return f"no finite value: {values[:5]}"
        return None

    async def label_values(self, selector: str, label: str) -> list[str]:
        response = await self.client.get(
            f"{self.base}/api/v1/label/{label}/values", params={"match[]": selector}
        )
        return response.json()["data"]

    async def targets(self) -> dict[str, str]:
        response = await self.client.get(f"{self.base}/api/v1/targets")
        return {t["labels"]["job"]: t["health"] for t in response.json()["data"]["activeTargets"]}

    async def rules(self) -> list[dict[str, Any]]:
        response = await self.client.get(f"{self.base}/api/v1/rules")
        return [r for g in response.json()["data"]["groups"] for r in g["rules"]]


# -- alert receivers ----------------------------------------------------------------------


class Receivers:
    """Two webhook endpoints on loopback: ``/ok`` answers 200, ``/fail`` 503 (a receiver that
    is down, so deliveries fail, are retried and finally given up)."""

    def __init__(self) -> None:
        counts = self.counts = {"ok": 0, "fail": 0}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                name = "ok" if self.path == "/ok" else "fail"
                counts[name] += 1
                self.send_response(200 if name == "ok" else 503)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receivers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def routing_config(receivers_port: int) -> str:
    """The shipped routing shape, with webhooks on loopback and a 1 s acknowledgement SLA."""
    base = f"http://127.0.0.1:{receivers_port}"
    return yaml.safe_dump(
        {
            "route": {
                "receiver": "cx",
                "group_by": ["kind", "customer_id"],
                "group_wait": "0s",
                "group_interval": "1m",
                "repeat_interval": "4h",
                "routes": [
                    {
                        "receiver": "support",
                        "matchers": [
                            'kind=~"detractor|low_csat|high_effort|negative_feedback|churn_.*"'
                        ],
                        "continue": True,
                    },
                    {"receiver": "retention", "matchers": ['kind="negative_feedback"']},
                    {"receiver": "marketing", "matchers": ['kind=~"segment_.*"']},
                ],
            },
            "receivers": [
                {
                    "name": "support",
                    "webhook_configs": [{"url": f"{base}/ok"}],
                    "ack_sla": "1s",
                    "escalate_to": "cx",
                },
                {"name": "retention", "webhook_configs": [{"url": f"{base}/fail"}]},
                {"name": "cx", "sse": True},
                {"name": "marketing", "sse": True},
            ],
        }
    )


# -- the platform ---------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@dataclass
class Stack:
    env: dict[str, str]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.env[f'CXM_{service.upper()}_PORT']}"

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.env['CXM_KAFKA_PORT']}"

    def log_problems(self, lines: int = 8) -> str:
        """The last warnings and errors of each process, for a failure message."""
        out = []
        for log in sorted((Path(self.env["CXM_DATA_DIR"]) / "logs").glob("*.log")):
            text = log.read_text(errors="replace").splitlines()
            bad = [line[:300] for line in text if re.search(r"WARN|ERROR|CRITICAL|Traceback", line)]
            if bad:
                out.append(f"--- {log.name}\n" + "\n".join(bad[-lines:]))
        return "\n".join(out)

    def log_tails(self, lines: int = 25) -> str:
        """The last lines of each service's log (a process that died says why there)."""
        out = []
        for service in SERVICES:
            log = Path(self.env["CXM_DATA_DIR"]) / "logs" / f"{service}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {service}.log\n" + "\n".join(line[:300] for line in tail))
        return "\n".join(out)


@pytest.fixture
def receivers() -> Iterator[Receivers]:
    with Receivers() as r:
        yield r


@pytest.fixture
def stack(receivers: Receivers) -> Iterator[Stack]:
    data_dir = REPO_ROOT / ".data" / f"obs-test-{uuid.uuid4().hex[:8]}"
    data_dir.mkdir(parents=True)
    routing = data_dir / "routing.yaml"
    routing.write_text(routing_config(receivers.port))
    ports = {f"CXM_{s.upper()}_PORT": str(free_port()) for s in SERVICES}
    env = dict(os.environ)
    env.update(
        ports,
        CXM_DATA_DIR=str(data_dir),
        CXM_KAFKA_PORT=str(free_port()),
        CXM_KAFKA_CONTROLLER_PORT=str(free_port()),
        CXM_KAFKA_JMX_PORT=str(free_port()),
        CXM_PG_PORT=str(free_port()),
        CXM_KAFKA_HEAP="512m",
        CXM_OBSERVABILITY="1",
        CXM_PROMETHEUS_PORT=str(free_port()),
        CXM_PROMETHEUS_SCRAPE_INTERVAL="2s",
        CXM_LAG_EXPORTER_PORT=str(free_port()),
        CXM_LAG_POLL_SECONDS="2",
        CXM_PG_EXPORTER_PORT=str(free_port()),
        # channel systems with their own write keys (source:channel:sha256)
        CXM_WRITE_KEYS=",".join(
            f"{source}:{channel}:{hashlib.sha256(key.encode()).hexdigest()}"
            for source, channel, key in (
                ("store-pos", "store", STORE_KEY),
                ("call-center", "call_center", CALL_CENTER_KEY),
            )
        ),
        # scoring: recompute decile/RFM cut points every 2 s instead of 5 min
        CXM_BASE_STATS_INTERVAL_S="2",
        # scoring insights: publish every second; estimate drivers from a few answers
        CXM_INSIGHTS_PUBLISH_INTERVAL_S="1",
        CXM_INSIGHTS_MIN_OBSERVATIONS="3",
        # alerting: the routing above, fast escalation and retries
        CXM_ROUTING_CONFIG=str(routing),
        CXM_ESCALATION_POLL_SECONDS="1",
        CXM_RETRY_BASE_SECONDS="0.2",
        CXM_RETRY_MAX_SECONDS="1",
        CXM_RETRY_MAX_ATTEMPTS="3",
        CXM_PROFILE_BASE_URL=f"http://127.0.0.1:{ports['CXM_PROFILE_PORT']}",
        CXM_PUBLIC_BASE_URL=f"http://127.0.0.1:{ports['CXM_ALERTING_PORT']}",
    )
    env.pop("CXM_TOPIC_PREFIX", None)  # a private broker: the platform's own topic names
    try:
        up = subprocess.run(
            ["bash", "deploy/local/stack.sh", "up"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert up.returncode == 0, up.stderr[-4000:]
        yield Stack(env)
    finally:
        run_dir = data_dir / "run"
        pids = [int(p.read_text()) for p in run_dir.glob("*.pid") if p.read_text().strip()]
        subprocess.run(
            ["bash", "deploy/local/stack.sh", "down"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            timeout=240,
            check=False,
        )
        for pid in pids:  # whatever `down` missed (Prometheus included): never left behind
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(data_dir, ignore_errors=True)
        fallback = Path("/var/tmp") / (
            f"cxm-pg-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]}"
        )
        shutil.rmtree(fallback, ignore_errors=True)
        fallback.with_suffix(".log").unlink(missing_ok=True)


# -- traffic --------------------------------------------------------------------------------

CHANNELS = ("web", "app", "store", "call_center", "email")
TOUCHPOINTS = ("checkout", "delivery", "hotline", "product_page", "store_counter")
NEGATIVE = (
    ("The delivery was late again and support never called back. Terrible.", "en-US"),
    ("配送が遅れて、サポートの対応も最悪でした。もう使いません。", "ja-JP"),
)
POSITIVE = (
    ("Great service, the staff were friendly and quick. Thank you!", "en-US"),
    ("とても丁寧な対応で満足しています。ありがとうございました。", "ja-JP"),
)


def event(
    kind: str,
    ids: dict[str, str],
    props: dict[str, Any] | None = None,
    *,
    channel: str = "web",
    touchpoint: str = "product_page",
    days_ago: float = 0.0,
    locale: str = "en-US",
) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(days=days_ago)
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "channel": channel,
        "touchpoint": touchpoint,
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "identifiers": ids,
        "properties": props or {},
        "context": {"locale": locale},
    }


def survey(ids: dict[str, str], n: int) -> dict[str, Any]:
    nps = (2, 9, 4, 10, 6, 8)[n % 6]
    comment, locale = (NEGATIVE if nps <= 6 else POSITIVE)[n % 2]
    props = {"nps": nps, "csat": min(5, (nps + 2) // 2), "ces": 5 - nps // 3, "comment": comment}
    return event(
        "survey_response",
        ids,
        props,
        channel=CHANNELS[n % len(CHANNELS)],
        touchpoint=TOUCHPOINTS[n % len(TOUCHPOINTS)],
        locale=locale,
    )


class Traffic:
    """Channel systems and people using the platform, in bounded amounts on loopback."""

    def __init__(self, client: httpx.AsyncClient, stack: Stack) -> None:
        self.client = client
        self.stack = stack
        self.run = uuid.uuid4().hex[:6]
        self.last_event: dict[str, Any] | None = None

    async def post(self, events: list[dict[str, Any]], *, key: str = "dev-write-key") -> None:
        response = await self.client.post(
            f"{self.stack.url('ingest')}/v1/events/batch",
            json={"events": events},
            headers=basic(key),
        )
        assert response.status_code == 200, response.text[:500]

    async def seed(self) -> None:
        """Purchasing customers first (so RFM cut points exist), then their survey answers
        (NPS/CSAT/CES by RFM segment), then poison messages for three consumers."""
        customers = [
            {"user_id": f"s-{self.run}-{i}", "email": f"s{i}-{self.run}@example.org"}
            for i in range(16)
        ]
        purchases = []
        for i, ids in enumerate(customers):
            for k in range(1 + i % 4):
                item = {"sku": f"sku-{k}", "category": ("shoes", "bags")[k % 2], "price": 40.0}
                purchases.append(
                    event(
                        "purchase",
                        ids,
                        {
                            "order_id": f"o-{self.run}-{i}-{k}",
                            "amount": 40.0 * (i + 1) * (k + 1),
                            "currency": "JPY",
                            "items": [{**item, "brand": "acme", "quantity": 1}],
                        },
                        channel=("web", "app", "store")[k % 3],
                        touchpoint="checkout",
                        days_ago=90 - 20 * k - i,
                    )
                )
        await self.post(purchases)
        await self.wait_for_base()
        await self.post([survey({"user_id": ids["user_id"]}, i) for i, ids in enumerate(customers)])
        await self.poison()

    async def wait_for_base(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = (await self.client.get(f"{self.stack.url('scoring')}/metrics")).text
            match = re.search(r"^cxm_scoring_base_customers (\S+)$", text, re.M)
            if match and float(match[1]) > 0:
                return
            await asyncio.sleep(0.5)
        pytest.fail("scoring never computed its customer base (decile/RFM cut points)")

    async def poison(self) -> None:
        topics = Topics()
        producer = make_producer(self.stack.kafka)
        await producer.start()
        try:
            for topic in (topics.touchpoints, topics.touchpoints_resolved, topics.signals):
                await producer.send_and_wait(topic, b"\xffnot json", key=b"poison")
        finally:
            await producer.stop()

    async def tick(self, n: int) -> None:
        """One second of traffic: a new customer answers a survey and writes feedback, two
        customers become one (web login with the email given in the store), a call-center
        agent links two customers (quarantined: low-trust channel), a retry and two bad
        events; then people act on what that produced."""
        run, prev = self.run, n - 1
        new = {"user_id": f"t-{run}-{n}", "device_id": f"d-{run}-{n}"}
        comment, locale = NEGATIVE[n % 2]
        web = [
            # insights: an experiment exposure, a delivery (every third one failed: a key
            # driver of the survey answer that follows) before the survey
            event(
                "experiment_exposure",
                new,
                {"experiment_id": "home_banner", "variant": "AB"[n % 2]},
                touchpoint="home",
            ),
            event(
                "delivery",
                new,
                {"order_id": f"o-{run}-{n}", "status": "failed" if n % 3 == 0 else "delivered"},
                touchpoint="delivery",
            ),
            survey(new, n),
            event("feedback", new, {"comment": comment}, touchpoint="delivery", locale=locale),
            event("page_view", {"user_id": f"m-{run}-{n}"}, {"url": "https://shop.example/"}),
            event("page_view", {"user_id": f"q-{run}-{n}"}, {"url": "https://shop.example/"}),
            event(
                "page_view",
                {"user_id": f"m-{run}-{prev}", "email": f"m{prev}-{run}@example.org"},
                {"url": "https://shop.example/account"},
            ),
            event("survey_response", new, {"nps": 11}),  # rejected: out of range
            {**event("page_view", new), "identifiers": {}},  # rejected: no identifier
        ]
        if self.last_event is not None:
            web.append(self.last_event)  # a retry: counted once, answered "duplicate"
        self.last_event = web[2]
        await self.post(web)
        visits = [
            event("store_visit", {"email": f"{p}{n}-{run}@example.org"}, {"store_id": "tokyo-1"})
            for p in ("m", "q")
        ]
        await self.post(
            [{**e, "channel": "store", "touchpoint": "store_counter"} for e in visits],
            key=STORE_KEY,
        )
        contact = event(
            "support_contact",
            {"user_id": f"q-{run}-{prev}", "email": f"q{prev}-{run}@example.org"},
            {"reason": "late_delivery", "wait_seconds": 240, "resolved": False},
            channel="call_center",
            touchpoint="hotline",
        )
        await self.post([contact], key=CALL_CENTER_KEY)
        await self.act(n)

    async def act(self, n: int) -> None:
        profile, alerting = self.stack.url("profile"), self.stack.url("alerting")
        merged = await self.client.get(
            f"{profile}/v1/profiles/lookup",
            params={"type": "user_id", "value": f"m-{self.run}-{n - 3}"},
            headers=API_TOKEN,
        )
        if merged.status_code == 200 and n % 3 == 0:
            customer = merged.json()["customer_id"]
            merges = await self.client.get(
                f"{profile}/v1/profiles/{customer}/merges", headers=API_TOKEN
            )
            for merge in merges.json().get("merges", [])[:1]:
                await self.client.post(
                    f"{profile}/v1/merges/{merge['merge_id']}/unmerge",
                    json={"reason": "agent typed the wrong email"},
                    headers=API_TOKEN,
                )
        pending = await self.client.get(
            f"{profile}/v1/quarantine", params={"limit": 1}, headers=API_TOKEN
        )
        for item in pending.json().get("items", []):
            decision = "approve" if n % 2 else "reject"
            await self.client.post(
                f"{profile}/v1/quarantine/{item['quarantine_id']}/{decision}", headers=API_TOKEN
            )
        if n % 4 == 0:
            erased = await self.client.get(
                f"{profile}/v1/profiles/lookup",
                params={"type": "user_id", "value": f"t-{self.run}-{n - 2}"},
                headers=API_TOKEN,
            )
            if erased.status_code == 200:
                await self.client.delete(
                    f"{profile}/v1/profiles/{erased.json()['customer_id']}", headers=API_TOKEN
                )
        alerts = await self.client.get(
            f"{alerting}/v1/alerts", params={"status": "open", "limit": 2}, headers=API_TOKEN
        )
        for alert in alerts.json():
            await self.client.post(
                f"{alerting}/v1/alerts/{alert['alert_id']}/ack",
                json={"by": "agent-7"},
                headers=API_TOKEN,
            )

    async def flow(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            await self.tick(n)
            n += 1
            rest = max(0.0, 1.0 - (time.monotonic() - started))
            try:
                await asyncio.wait_for(stop.wait(), rest)
            except TimeoutError:
                pass


# -- the test -------------------------------------------------------------------------------

# What the traffic did must show on the dashboards, not only zeros: raw totals over the run.
TRAFFIC_SHOWS = {
    "dead letters from the three poison messages": (
        r'sum(cxm_kafka_topic_end_offset{topic=~".+\\.dlq"}) >= 3'
    ),
    "rejected events": 'sum(cxm_ingest_events_total{outcome="rejected"}) > 0',
    "retries answered as duplicates": 'sum(cxm_ingest_events_total{outcome="duplicate"}) > 0',
    "merges": "sum(cxm_profile_merges_total) > 0",
    "quarantined merges": "sum(cxm_profile_quarantined_merges_total) > 0",
    "quarantine decisions": "sum(cxm_profile_quarantine_decisions_total) > 0",
    "unmerges": "sum(cxm_profile_unmerges_total) > 0",
    "erasures": "sum(cxm_profile_erasures_total) > 0",
    "identity changes applied by scoring": "sum(cxm_scoring_identity_changes_total) > 0",
    "alerts acknowledged": "sum(cxm_alerting_time_to_ack_seconds_count) > 0",
    "acknowledgement SLA breaches": "sum(cxm_alerting_sla_breaches_total) > 0",
    "alert deliveries given up": "sum(cxm_alerting_deliveries_given_up_total) > 0",
    "consumer lag figures": "count(cxm_kafka_consumer_lag_messages) > 0",
    "customers counted in RFM segments": 'sum(cxm_scoring_customers{segment=~"rfm:.*"}) > 0',
    "comments analysed in English and Japanese": (
        "count(count by (language) (cxm_scoring_feedback_sentiment_total)) == 2"
    ),
    "negative comments": 'sum(cxm_scoring_feedback_sentiment_total{label="negative"}) > 0',
    "positive comments": 'sum(cxm_scoring_feedback_sentiment_total{label="positive"}) > 0',
}


async def evaluate(prometheus: Prometheus, expressions: list[Expression]) -> dict[str, str]:
    problems = {}
    for item in expressions:
        problem = await prometheus.problem(item)
        if problem is not None:
            problems[item.where] = f"{problem}\n      {item.expr}"
    for what, expr in TRAFFIC_SHOWS.items():
        if await prometheus.problem(Expression(what, expr, True)) is not None:
            problems[f"traffic: {what}"] = f"not seen\n      {expr}"
    for where, selector, label in variable_queries():
        if not await prometheus.label_values(selector, label):
            problems[where] = f"no values for label_values({selector}, {label})"
    return problems


async def test_every_panel_and_rule_has_data_on_a_real_prometheus(stack: Stack) -> None:
    expressions = panel_expressions() + rule_expressions()
    async with httpx.AsyncClient(timeout=15) as client:
        prometheus = Prometheus(client, f"http://127.0.0.1:{stack.env['CXM_PROMETHEUS_PORT']}")
        traffic = Traffic(client, stack)
        try:
            await traffic.seed()
        except httpx.TransportError as exc:  # a service down: say which and why
            pytest.fail(f"seeding failed: {exc!r}\n{stack.log_tails()}")
        stop = asyncio.Event()
        flowing = asyncio.create_task(traffic.flow(stop))
        try:
            deadline = time.monotonic() + EVALUATION_DEADLINE_S
            problems: dict[str, str] = {"not evaluated yet": ""}
            while problems and time.monotonic() < deadline and not flowing.done():
                await asyncio.sleep(4)
                problems = await evaluate(prometheus, expressions)
            if flowing.done():
                flowing.result()  # a traffic step failed: show why
            targets = await prometheus.targets()
            rules = await prometheus.rules()
        finally:
            stop.set()
            await asyncio.gather(flowing, return_exceptions=True)

    assert not problems, (
        "queries without data or with errors:\n"
        + "\n".join(f"  {where}: {problem}" for where, problem in sorted(problems.items()))
        + "\n"
        + stack.log_problems()
    )
    assert targets == dict.fromkeys(JOBS, "up"), targets
    unhealthy = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not unhealthy, unhealthy
    assert len(rules) == len(rule_expressions())
    # the panels are not vacuous: they evaluated the metrics of every part of the platform
    used = " ".join(e.expr for e in expressions)
    for prefix in ("cxm_ingest_", "cxm_profile_", "cxm_scoring_", "cxm_alerting_", "cxm_kafka_"):
        assert prefix in used
    for family in ("kafka_server_", "pg_", "jvm_"):
        assert family in used
