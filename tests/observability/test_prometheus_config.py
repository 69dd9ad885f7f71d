"""The Prometheus and Grafana files are valid for the tools that load them: ``promtool`` (from
Debian's ``prometheus`` package, installed by deploy/local/prometheus.sh) accepts both scrape
configs and the rules, the alerts fire in promtool's unit tests, the committed dashboards are
what the generator produces, and docker-compose wires them into Prometheus and Grafana."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cxm_shared.testing.infra import REPO_ROOT

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
GRAFANA = REPO_ROOT / "deploy" / "grafana"


@pytest.fixture(scope="module")
def promtool() -> str:
    if shutil.which("promtool") is None:  # idempotent: installs only what is missing
        subprocess.run(["bash", "deploy/local/prometheus.sh", "install"], cwd=REPO_ROOT, check=True)
    path = shutil.which("promtool")
    assert path, "promtool missing after deploy/local/prometheus.sh install"
    return path


@pytest.fixture
def local_config(tmp_path: Path) -> Iterator[Path]:
    """prometheus.local.yml rendered by the script `make up` uses, for non-default ports."""
    env = dict(os.environ, CXM_DATA_DIR=str(tmp_path), CXM_INGEST_PORT="18001")
    env["CXM_PROMETHEUS_SCRAPE_INTERVAL"] = "2s"
    result = subprocess.run(
        ["bash", "deploy/local/prometheus.sh", "render"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    yield Path(result.stdout.strip().splitlines()[-1])


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_compose_and_the_local_config(promtool: str, local_config: Path):
    for config in (PROMETHEUS / "prometheus.yml", local_config):
        result = run(promtool, "check", "config", str(config))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 rule files found" in result.stdout  # the rules are part of both
    rendered = yaml.safe_load(local_config.read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0]
        for job in rendered["scrape_configs"]
    }
    assert targets["cxm-ingest"] == "127.0.0.1:18001"
    assert rendered["global"]["scrape_interval"] == "2s"
    compose_jobs = {
        job["job_name"]
        for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert compose_jobs == set(targets)  # same job names: the rules and dashboards fit both


def test_promtool_accepts_the_rules_and_the_alerts_fire_on_their_situations(promtool: str):
    rules = sorted(str(p) for p in (PROMETHEUS / "rules").glob("*.yml"))
    assert rules
    checked = run(promtool, "check", "rules", *rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.yml"))
    tested = run(promtool, "test", "rules", *tests)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_ops_alert_says_how_bad_and_what_it_is_about():
    for path in (PROMETHEUS / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule
                    assert rule["labels"]["component"], rule
                    assert rule["annotations"]["summary"], rule


def test_committed_dashboards_are_what_the_generator_writes():
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for path in (GRAFANA / "dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "prometheus", (path.name, panel["title"])


def test_grafana_provisioning_points_at_the_prometheus_datasource_and_the_dashboards():
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/cxm.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    grafana_mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in grafana_mounts
    assert "./deploy/prometheus:/etc/prometheus:ro" in compose["services"]["prometheus"]["volumes"]
    assert "-javaagent:" in compose["services"]["kafka"]["environment"]["KAFKA_OPTS"]
