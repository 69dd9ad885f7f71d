"""docker-compose.yml is valid for Docker users: `docker compose config` accepts it and it
wires every part of the stack (this machine has no Docker engine, so it cannot be run here)."""

import shutil
import subprocess

import pytest
import yaml

from cxm_shared.testing.infra import REPO_ROOT


def compose_config() -> dict:
    if shutil.which("docker") is None:
        pytest.fail("the docker client is missing; `make test` installs the compose plugin")
    result = subprocess.run(
        ["docker", "compose", "-f", "docker-compose.yml", "config"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_accepted_and_has_the_whole_stack() -> None:
    config = compose_config()
    services = config["services"]
    assert set(services) == {
        "kafka",
        "postgres",
        "ingest",
        "profile",
        "scoring",
        "alerting",
        "prometheus",
        "grafana",
        # observability: the broker's JMX agent, consumer lag, PostgreSQL (deploy/prometheus/)
        "kafka-jmx-agent",
        "kafka-lag-exporter",
        "postgres-exporter",
    }
    for name, port in [("ingest", 8001), ("profile", 8002), ("scoring", 8003), ("alerting", 8004)]:
        svc = services[name]
        assert svc["build"]["args"]["SERVICE"] == name
        assert (REPO_ROOT / svc["build"]["dockerfile"]).exists()
        assert any(p["target"] == port for p in svc["ports"])
        assert svc["environment"]["CXM_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert set(svc["depends_on"]) == {"kafka", "postgres"}
