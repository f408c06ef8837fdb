"""The Kubernetes manifests are valid for the API version we target and wire every service the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"
SERVICES = {"catalog": 8081, "orders": 8082, "payments": 8083, "notifications": 8084, "gateway": 8080}


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize(("name", "port"), SERVICES.items())
def test_each_service_scales_on_its_own_with_probes(name: str, port: int) -> None:
    by_kind = {d["kind"]: d for d in documents() if d["metadata"]["name"] == name}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= by_kind.keys()
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].split(":")[0].endswith(f"bejo-{name}")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == port
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env[f"{name.upper()}_HTTP_PORT"] == str(port) and env[f"{name.upper()}_HTTP_HOST"] == "0.0.0.0"
    assert by_kind["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == name
