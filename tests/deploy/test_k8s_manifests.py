"""deploy/k8s: every manifest is valid Kubernetes (the JSON schemas kubernetes-validate ships,
checked offline and strictly: an unknown or misspelt field fails), each service is deployed
the way it must run (probes on /readyz and /healthz, resources, config from the ConfigMap and
Secret), its environment is one the service itself accepts in production mode, and the rules
mounted from ConfigMaps load with the services' own loaders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from cxm_alerting.config import AlertingSettings
from cxm_alerting.routing.tree import load_tree
from cxm_ingest.config import IngestSettings
from cxm_profile.config import ProfileSettings
from cxm_profile.identity.rules import load_rules
from cxm_scoring.config import ScoringSettings
from cxm_scoring.domain.segments import compile_segment_rules
from cxm_shared.testing.infra import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
# The oldest Kubernetes release still in upstream support when this was written, and the
# newest the package ships schemas for.
VERSIONS = ("1.33.0", kubernetes_validate.latest_version())
SETTINGS = {
    "ingest": IngestSettings,
    "profile": ProfileSettings,
    "scoring": ScoringSettings,
    "alerting": AlertingSettings,
}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
ALL = {p.name: documents(p) for p in MANIFESTS}


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for docs in ALL.values() for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    assert ALL[path.name], f"{path.name} holds no object"
    for doc in ALL[path.name]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


def test_kustomization_applies_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in MANIFESTS} - {"secret.example.yaml"}
    images = {i["name"] for i in kustomization["images"]}
    used = {
        c["image"].split(":")[0]
        for d in objects("Deployment").values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == used


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def environment(deployment: dict[str, Any]) -> dict[str, str]:
    """The container's environment as Kubernetes builds it, with the example Secret."""
    configmaps = objects("ConfigMap")
    (secret,) = objects("Secret").values()
    c = container(deployment)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            env[var["name"]] = secret["stringData"][ref["key"]]
    return env


@pytest.mark.parametrize("service", SETTINGS)
def test_each_service_is_deployed_with_probes_resources_and_a_service(service: str) -> None:
    deployment = objects("Deployment")[f"cxm-{service}"]
    spec = deployment["spec"]
    assert spec["replicas"] >= 1
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    c = container(deployment)
    assert c["command"] == ["python", "-m", f"cxm_{service}"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    (port,) = c["ports"]
    svc = objects("Service")[f"cxm-{service}"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] == port["name"] == "http"
    # The port the service listens on by default is the one the pod exposes.
    assert SETTINGS[service].model_fields["port"].default == port["containerPort"]


@pytest.mark.parametrize("service", SETTINGS)
def test_environment_is_accepted_by_the_service_in_production_mode(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = objects("Deployment")[f"cxm-{service}"]
    env = environment(deployment)
    assert env["CXM_MODE"] == "production"
    for name in [k for k in os.environ if k.startswith("CXM_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = SETTINGS[service]()  # raises on anything the service would refuse at start
    assert settings.mode == "production" and not settings.is_local
    assert settings.kafka_bootstrap == env["CXM_KAFKA_BOOTSTRAP"]
    # Every file the environment names is mounted from a ConfigMap key.
    mounts = {m["name"]: m["mountPath"] for m in container(deployment).get("volumeMounts", [])}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    configmaps = objects("ConfigMap")
    for name in ("CXM_ROUTING_CONFIG", "CXM_SEGMENTS_PATH", "CXM_RESOLUTION_RULES_FILE"):
        if name not in env:
            continue
        path = Path(env[name])
        (volume,) = [v for v, at in mounts.items() if Path(at) == path.parent]
        assert path.name in configmaps[volumes[volume]["configMap"]["name"]]["data"]


def test_rules_in_the_configmaps_load_with_the_services_loaders() -> None:
    configmaps = objects("ConfigMap")
    tree = load_tree(configmaps["cxm-alerting-routing"]["data"]["routing.yaml"])
    assert {"support", "logistics", "cx", "marketing"} <= set(tree.receivers)
    (secret,) = objects("Secret").values()
    refs = json.loads(secret["stringData"]["CXM_WEBHOOK_SECRETS"])
    routing = yaml.safe_load(configmaps["cxm-alerting-routing"]["data"]["routing.yaml"])
    for receiver in routing["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            assert hook["secret_ref"] in refs  # every signed webhook has its secret
    rules = compile_segment_rules(
        json.loads(configmaps["cxm-scoring-rules"]["data"]["segments.json"])
    )
    assert {r.name for r in rules} == {"vip_at_risk", "unhappy", "repeat_problem"}
    resolution = load_rules(
        yaml.safe_load(configmaps["cxm-profile-rules"]["data"]["resolution-rules.yaml"])
    )
    assert resolution.priority[0] == "user_id"
