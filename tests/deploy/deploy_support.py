"""Rendering the kustomize overlays and reading what the services' settings accept (tests/deploy only)."""

from __future__ import annotations

import atexit
import base64
import copy
import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import AliasChoices

from bejo_catalog.settings import CatalogSettings
from bejo_contracts.topology import QUEUES
from bejo_gateway.settings import GatewaySettings
from bejo_kit.settings import KitSettings
from bejo_notifications.settings import NotificationsSettings
from bejo_orders.settings import OrdersSettings
from bejo_payments.settings import PaymentsSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
# Kubernetes versions every resource is validated for: the minimum stated in docs/operations.md
# (the preStop sleep action is on by default from 1.30) and the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

SETTINGS: dict[str, type[KitSettings]] = {
    "catalog": CatalogSettings,
    "orders": OrdersSettings,
    "payments": PaymentsSettings,
    "notifications": NotificationsSettings,
    "gateway": GatewaySettings,
}
PORTS = {"catalog": 8081, "orders": 8082, "payments": 8083, "notifications": 8084, "gateway": 8080}
# The services that consume RabbitMQ queues, and their queues (bejo_contracts.topology).
CONSUMERS = {service: [spec.name for spec in specs] for service, specs in QUEUES.items()}

Doc = dict[str, Any]
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def kustomize() -> str:
    """Path of the pinned kustomize; scripts/kustomize.sh builds it on first use (`make kustomize`)."""
    done = subprocess.run([str(REPO / "scripts" / "kustomize.sh")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/kustomize.sh failed:\n{done.stderr}")
    return done.stdout.strip()


@functools.cache
def _work_copy() -> Path:
    """deploy/k8s copied aside with dev credentials freshly generated: the checkout's secrets/ are never read."""
    root = Path(tempfile.mkdtemp(prefix="bejo-deploy-"))
    atexit.register(shutil.rmtree, root, True)  # generated credentials do not outlive the run
    shutil.copytree(K8S, root / "k8s", ignore=shutil.ignore_patterns("secrets"))
    generate_dev_secrets(root / "k8s" / "overlays" / "dev" / "secrets")
    return root / "k8s"


def generate_dev_secrets(target: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(K8S / "overlays" / "dev" / "gen-secrets.py"), "--dir", str(target)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@functools.cache
def _render(overlay: str) -> tuple[Doc, ...]:
    done = subprocess.run(
        [kustomize(), "build", str(_work_copy() / "overlays" / overlay)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kustomize build overlays/{overlay} failed:\n{done.stderr}")
    return tuple(d for d in yaml.load_all(done.stdout, Loader=_Loader) if d)


def render(overlay: str) -> list[Doc]:
    """The overlay's resources as kustomize builds them (a fresh copy each call: tests may change it)."""
    return copy.deepcopy(list(_render(overlay)))


def dev_secrets_dir() -> Path:
    return _work_copy() / "overlays" / "dev" / "secrets"


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def env_names(settings: type[KitSettings]) -> set[str]:
    """Every environment variable a settings class reads (pydantic-settings: alias, or prefix + field name)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{field_name}")
    return {n.upper() for n in names}


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, # comments and blank lines skipped: the format kustomize and Compose share."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        values[key.strip()] = value
    return values


@functools.cache
def _store_samples() -> dict[str, str]:
    """Values standing in for the secret manager's entries when prod's ExternalSecret templates are filled."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "snap_client_secrets": json.dumps({"BANKPARTNER": "store-secret"}),
        "snap_public_keys": json.dumps({"BANKPARTNER": pem.decode()}),
    }


def fill_template(text: str) -> str:
    samples = _store_samples()
    return re.sub(r"\{\{\s*\.(\w+)(\s*\|\s*urlquery)?\s*\}\}", lambda m: samples.get(m.group(1), "store-secret"), text)


def secret_values(docs: list[Doc], name: str) -> dict[str, str] | None:
    """What the Secret `name` will hold: a rendered Secret (dev), or an ExternalSecret's target (prod)."""
    for d in docs:
        if d["kind"] == "Secret" and d["metadata"]["name"] == name:
            decoded = {k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()}
            return decoded | {str(k): str(v) for k, v in d.get("stringData", {}).items()}
        if d["kind"] == "ExternalSecret" and d["spec"]["target"]["name"] == name:
            template = d["spec"]["target"].get("template", {}).get("data", {})
            return {k: fill_template(v) for k, v in template.items()}
    return None


def container_environment(docs: list[Doc], deployment: Doc) -> dict[str, str]:
    """The environment the first container of a Deployment starts with: envFrom sources, then env."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            ref = source["configMapRef"]
            config = of_kind(docs, "ConfigMap").get(ref["name"])
            assert config is not None or ref.get("optional"), f"ConfigMap {ref['name']} is not rendered"
            environment |= (config or {}).get("data", {})
        else:
            ref = source["secretRef"]
            values = secret_values(docs, ref["name"])
            assert values is not None or ref.get("optional"), f"Secret {ref['name']} comes from nowhere"
            environment |= values or {}
    environment |= {e["name"]: e["value"] for e in container.get("env", [])}
    return environment


def matches(selector: Doc, labels: dict[str, str]) -> bool:
    """Does a Kubernetes label selector select these labels (matchLabels and In/NotIn/Exists)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        op = expr["operator"]
        if (
            (op == "In" and value not in expr["values"])
            or (op == "NotIn" and value in expr["values"])
            or (op == "Exists" and value is None)
            or (op == "DoesNotExist" and value is not None)
        ):
            return False
    return True


def policies_for(docs: list[Doc], app: str) -> Iterator[Doc]:
    labels = {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "bejo"}
    for policy in of_kind(docs, "NetworkPolicy").values():
        if matches(policy["spec"]["podSelector"], labels):
            yield policy
