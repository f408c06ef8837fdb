"""The kustomize overlays render, validate, and keep the promises docs/operations.md makes.

Each overlay is built with the pinned kustomize (scripts/kustomize.sh) from a copy of deploy/k8s
with freshly generated dev credentials. Built-in kinds are validated with kubernetes-validate
--strict for the minimum and the newest Kubernetes version; custom resources (KEDA, the RabbitMQ
operators, the MongoDB Community Operator, external-secrets) against the structural schemas in
crd_schemas.yaml.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_support import (
    CONSUMERS,
    DEPLOY,
    K8S,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    PORTS,
    REPO,
    SETTINGS,
    Doc,
    container_environment,
    dev_secrets_dir,
    env_names,
    of_kind,
    parse_env_file,
    policies_for,
    render,
)

from bejo_gateway.routing import SNAP_PATHS
from bejo_kit.settings import KitSettings

CRD_SCHEMAS: dict[str, Any] = yaml.safe_load((Path(__file__).with_name("crd_schemas.yaml")).read_text())
BEJO = set(PORTS)


def doc_id(d: Doc) -> str:
    return f"{d['kind']}/{d['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_resource_validates(overlay: str) -> None:
    docs = render(overlay)
    assert docs, f"overlays/{overlay} rendered nothing"
    errors: list[str] = []
    custom = 0
    for d in docs:
        key = f"{d['apiVersion']}/{d['kind']}"
        if key in CRD_SCHEMAS:
            custom += 1
            validator = jsonschema.Draft202012Validator(CRD_SCHEMAS[key])
            errors += [f"{doc_id(d)}: {'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(d)]
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(f"{doc_id(d)}: {key} is neither a Kubernetes {version} kind nor in crd_schemas.yaml")
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{doc_id(d)} (Kubernetes {version}): {exc.message}")
        assert d["metadata"].get("namespace", "bejo") == "bejo" or d["kind"] == "Namespace", doc_id(d)
    assert not errors, "\n".join(errors)
    assert custom > 0 or overlay == "dev"


def test_the_crd_schemas_catch_typos() -> None:
    """The structural schemas are strict where bejo writes: a misspelt field fails."""
    scaled = of_kind(render("prod"), "ScaledObject")["orders"]
    scaled["spec"]["triggers"][0]["metadata"]["queuename"] = scaled["spec"]["triggers"][0]["metadata"].pop("queueName")
    schema = CRD_SCHEMAS["keda.sh/v1alpha1/ScaledObject"]
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(scaled))
    mongo = of_kind(render("prod"), "MongoDBCommunity")["mongodb"]
    mongo["spec"]["users"][0]["passwordSecretRefs"] = mongo["spec"]["users"][0].pop("passwordSecretRef")
    schema = CRD_SCHEMAS["mongodbcommunity.mongodb.com/v1/MongoDBCommunity"]
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(mongo))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_probes_resources_and_runs_as_non_root(overlay: str) -> None:
    docs = render(overlay)
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert {d["metadata"]["name"] for d in workloads if d["kind"] == "Deployment"} >= BEJO
    for w in workloads:
        where = f"{overlay}: {doc_id(w)}"
        pod = w["spec"]["template"]["spec"]
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, where
        assert security["runAsUser"] > 0 and security["runAsGroup"] > 0 and security["fsGroup"] > 0, where
        assert security["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        for c in pod["containers"]:
            assert {"readinessProbe", "livenessProbe"} <= c.keys(), where
            assert {"cpu", "memory"} <= c["resources"]["requests"].keys(), where
            assert "memory" in c["resources"]["limits"], where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", sorted(PORTS))
def test_each_service_is_wired_the_same_way(overlay: str, name: str) -> None:
    docs = render(overlay)
    deployment = of_kind(docs, "Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    port = PORTS[name]
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert (
        pod["serviceAccountName"] == name
        and of_kind(docs, "ServiceAccount")[name]["automountServiceAccountToken"] is False
    )
    assert pod["enableServiceLinks"] is False  # no <NAME>_PORT=tcp://... next to <NAME>_* settings
    spread = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert spread == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    # The pod outlives the preStop pause plus the service's own drain.
    environment = container_environment(docs, deployment)
    drain = float(environment["SHUTDOWN_GRACE_SECONDS"]) + container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > drain
    assert of_kind(docs, "Service")[name]["spec"]["ports"][0]["port"] == port
    assert (
        environment[f"{name.upper()}_HTTP_PORT"] == str(port) and environment[f"{name.upper()}_HTTP_HOST"] == "0.0.0.0"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", sorted(PORTS))
def test_environment_names_are_the_ones_the_settings_read_and_load(
    overlay: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(overlay)
    settings_class = SETTINGS[name]
    environment = container_environment(docs, of_kind(docs, "Deployment")[name])
    # Every key of the shared ConfigMap is read by some service; the rest of a pod's environment by it.
    shared = {
        k
        for c in of_kind(docs, "ConfigMap").values()
        if c["metadata"]["name"].startswith("bejo-config")
        for k in c["data"]
    }
    read_by_any = set().union(*(env_names(s) for s in SETTINGS.values()))
    assert shared <= read_by_any, f"nobody reads {sorted(shared - read_by_any)}"
    own = set(environment) - shared
    assert own <= env_names(settings_class), f"{name} does not read {sorted(own - env_names(settings_class))}"
    # And the values load: the service would start with this environment.
    for var in env_names(settings_class):
        monkeypatch.delenv(var, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    settings = settings_class()
    assert settings.http_port == PORTS[name]
    if name != "gateway":
        assert settings.amqp_url.startswith("amqp://") and f"{name}:" in settings.amqp_url
        assert settings.mongodb_url.startswith("mongodb://") and f"/bejo_{name}?" in settings.mongodb_url


def test_prod_is_production_with_jwks_https_webhooks_and_no_sandbox() -> None:
    docs = render("prod")
    for name in PORTS:
        environment = container_environment(docs, of_kind(docs, "Deployment")[name])
        assert environment["BEJO_ENV"] == "production"  # webhooks: https only, public addresses only
        assert environment["JWT_JWKS_URL"].startswith("https://")
        assert "JWT_SECRET" not in environment
        assert environment.get("PAYMENTS_SANDBOX_ENABLED", "false") == "false"
    assert not [d for d in docs if d["kind"] == "Secret"], "prod takes every secret from external-secrets"
    ingress = of_kind(docs, "Ingress")["gateway"]["spec"]
    assert ingress["ingressClassName"] and ingress["tls"][0]["secretName"]
    assert ingress["tls"][0]["hosts"] == [r["host"] for r in ingress["rules"]]
    # Everything the gateway serves to the outside goes to the gateway, and nothing else is exposed.
    paths = {p["path"]: p for r in ingress["rules"] for p in r["http"]["paths"]}
    assert set(paths) == {"/api/v1", "/", "/static", *SNAP_PATHS}  # the API, the dashboard, SNAP
    assert paths["/"]["pathType"] == "Exact", "/ as a prefix would expose /metrics"
    assert {p["backend"]["service"]["name"] for p in paths.values()} == {"gateway"}


def test_dev_has_one_replica_each_in_cluster_stores_and_the_sandbox() -> None:
    docs = render("dev")
    deployments = of_kind(docs, "Deployment")
    assert all(deployments[n]["spec"]["replicas"] == 1 for n in PORTS)
    assert {"rabbitmq", "mongodb"} <= of_kind(docs, "StatefulSet").keys()
    payments = container_environment(docs, deployments["payments"])
    assert payments["PAYMENTS_SANDBOX_ENABLED"] == "true" and payments["BEJO_ENV"] != "production"
    assert not [d for d in docs if d["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]


def test_every_consumer_scales_on_its_queues_and_the_gateway_on_cpu() -> None:
    docs = render("prod")
    scaled = of_kind(docs, "ScaledObject")
    auths = of_kind(docs, "TriggerAuthentication")
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    assert set(scaled) == set(CONSUMERS)
    for service, queues in CONSUMERS.items():
        spec = scaled[service]["spec"]
        assert spec["scaleTargetRef"]["name"] == service and spec["minReplicaCount"] >= 2
        rabbit = [t for t in spec["triggers"] if t["type"] == "rabbitmq"]
        assert sorted(t["metadata"]["queueName"] for t in rabbit) == sorted(queues)
        assert any(t["type"] == "cpu" for t in spec["triggers"]), "the HTTP side scales on CPU too"
        for t in rabbit:
            ref = auths[t["authenticationRef"]["name"]]["spec"]["secretTargetRef"][0]
            assert (ref["parameter"], ref["name"], ref["key"]) == ("host", f"{service}-secrets", "AMQP_URL")
    # KEDA owns the HPA of a scaled Deployment: a second HPA would fight it.
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == {"gateway"}
    gateway = hpas["gateway"]["spec"]
    assert gateway["minReplicas"] >= 2 and gateway["metrics"][0]["resource"]["name"] == "cpu"
    assert {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in of_kind(docs, "PodDisruptionBudget").values()
    } == BEJO
    assert all(d["spec"]["replicas"] >= 2 for n, d in of_kind(docs, "Deployment").items() if n in BEJO)


def _peers(rules: list[Doc], direction: str) -> list[Doc]:
    return [peer for rule in rules for peer in rule.get(direction, [])]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_open_only_what_is_needed(overlay: str) -> None:
    docs = render(overlay)
    policies = of_kind(docs, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    # Only the gateway takes traffic from the ingress controller's namespace.
    for policy in policies.values():
        for peer in _peers(policy["spec"].get("ingress", []), "from"):
            if (
                peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                == "ingress-nginx"
            ):
                assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "gateway"}}
    # Each service reaches RabbitMQ and MongoDB (its own user and database there) and nothing else
    # inside the cluster; notifications may go out for SMTP and webhooks; prod fetches the JWKS.
    allowed_pods = {"rabbitmq", "mongodb"}
    extra = {"dev": {"payments": {"payments"}, "notifications": {"smtp-sink"}}, "prod": {}}[overlay]
    for service in CONSUMERS:
        pods: set[str] = set()
        blocks: list[tuple[str, set[int]]] = []
        for policy in policies_for(docs, service):
            if policy["metadata"]["name"] == "allow-dns":
                continue
            for rule in policy["spec"].get("egress", []):
                ports = {p["port"] for p in rule.get("ports", [])}
                for peer in rule["to"]:
                    if "ipBlock" in peer:
                        blocks.append((peer["ipBlock"]["cidr"], ports))
                    else:
                        assert "namespaceSelector" not in peer, f"{service} may reach another namespace"
                        pods.add(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
        assert pods == allowed_pods | extra.get(service, set()), (service, pods)
        for cidr, ports in blocks:
            if service == "notifications" and cidr == "0.0.0.0/0":
                assert ports == {25, 465, 587, 443, 80}
            else:
                assert overlay == "prod" and cidr.endswith("/32") and ports == {443}, (service, cidr)


def _rabbit_permissions(overlay: str) -> dict[str, dict[str, str]]:
    if overlay == "prod":
        perms = of_kind(render("prod"), "Permission")
        return {p["spec"]["userReference"]["name"]: p["spec"]["permissions"] for p in perms.values()}
    definitions = json.loads((dev_secrets_dir() / "definitions.json").read_text())
    return {p["user"]: p for p in definitions["permissions"] if p["user"] != "admin"}


def _queues_of(service: str) -> list[str]:
    delays = KitSettings().retry_delays_ms
    names = []
    for queue in CONSUMERS[service]:
        names += [queue, f"{queue}.dlq", *(f"{queue}.retry.{d}ms" for d in delays)]
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_its_own_rabbitmq_user_limited_to_its_queues(overlay: str) -> None:
    permissions = _rabbit_permissions(overlay)
    assert set(permissions) == set(CONSUMERS)
    for service, perm in permissions.items():
        configure, write, read = (re.compile(perm[k]) for k in ("configure", "write", "read"))
        for queue in _queues_of(service):
            assert configure.fullmatch(queue) and read.fullmatch(queue) and write.fullmatch(queue), (service, queue)
        assert write.fullmatch("bejo.events") and write.fullmatch("amq.default") and read.fullmatch("bejo.events")
        for other in set(CONSUMERS) - {service}:
            for queue in _queues_of(other):
                assert not (configure.fullmatch(queue) or read.fullmatch(queue) or write.fullmatch(queue)), (
                    service,
                    queue,
                )
        assert bool(configure.fullmatch("catalog.sync")) == (service == "catalog")


def test_each_service_has_its_own_mongodb_user_with_its_own_database_only() -> None:
    docs = render("prod")
    mongo = of_kind(docs, "MongoDBCommunity")["mongodb"]["spec"]
    assert mongo["members"] == 3
    users = {u["name"]: u for u in mongo["users"]}
    targets = {e["spec"]["target"]["name"] for e in of_kind(docs, "ExternalSecret").values()}
    for service in CONSUMERS:
        assert users[service]["roles"] == [{"name": "readWrite", "db": f"bejo_{service}"}]
        assert users[service]["passwordSecretRef"]["name"] in targets
    assert of_kind(docs, "RabbitmqCluster")["rabbitmq"]["spec"]["replicas"] == 3
    # dev: the init script grants readWrite on bejo_<service> to the user <service>, with its password.
    script = (K8S / "overlays" / "dev" / "files" / "create-users.js").read_text()
    assert 'roles: [{ role: "readWrite", db: name }]' in script and "const name = `bejo_${service}`" in script
    stores = parse_env_file(dev_secrets_dir() / "mongodb.env")
    for service in CONSUMERS:
        url = parse_env_file(dev_secrets_dir() / f"{service}.env")["MONGODB_URL"]
        assert url.startswith(f"mongodb://{service}:{stores[f'{service.upper()}_DB_PASSWORD']}@")


def test_no_secret_values_in_git() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "deploy"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked, "deploy/ is not tracked"
    for path in tracked:
        if not (REPO / path).exists():  # deleted in the working tree
            continue
        assert "/secrets/" not in path, f"{path} is a credentials file"
        if path.endswith((".yaml", ".yml")):
            for d in yaml.safe_load_all((REPO / path).read_text()):
                assert not (d and d.get("kind") == "Secret"), f"{path} holds a Secret"
    # The dev credentials directory is ignored by git, and gen-secrets writes nothing elsewhere.
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/k8s/overlays/dev/secrets/catalog.env"], cwd=REPO, check=False
    )
    assert ignored.returncode == 0, "deploy/k8s/overlays/dev/secrets/ must be git-ignored"
    kustomization = yaml.safe_load((K8S / "overlays" / "dev" / "kustomization.yaml").read_text())
    for generator in kustomization["secretGenerator"]:
        assert all(src.startswith("secrets/") for src in generator.get("envs", []) + generator.get("files", []))
        assert "literals" not in generator


def test_image_names_match_the_dockerfile() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    repository = re.search(r"named (\S+)-<SERVICE>", dockerfile)
    built = re.search(r"case \"\$SERVICE\" in\s*\\\s*(.+?)\) path=", dockerfile, re.S)
    assert repository and built
    services = set(built.group(1).split("|")) | {"gateway"}
    assert services == BEJO
    for overlay in OVERLAYS:
        for d in render(overlay):
            if d["kind"] not in ("Deployment", "StatefulSet"):
                continue
            for c in d["spec"]["template"]["spec"]["containers"]:
                image, _, tag = c["image"].partition(":")
                if image.startswith(repository.group(1).rsplit("/", 1)[0]):
                    assert image in {f"{repository.group(1)}-{s}" for s in services} and tag, c["image"]
                    if d["metadata"]["name"] in BEJO:
                        assert image == f"{repository.group(1)}-{d['metadata']['name']}"
                        assert "command" not in c and "args" not in c, "the image's CMD starts the service"


def test_dev_credentials_are_generated_consistently(tmp_path: Path) -> None:
    from deploy_support import generate_dev_secrets

    first = generate_dev_secrets(tmp_path)
    before = (tmp_path / "orders.env").read_text()
    again = generate_dev_secrets(tmp_path)  # kept: the stores already hold these passwords
    assert "wrote" in first and "keeping" in again and (tmp_path / "orders.env").read_text() == before
    assert (tmp_path / "orders.env").stat().st_mode & 0o077 == 0
    definitions = json.loads((tmp_path / "definitions.json").read_text())
    assert {u["name"] for u in definitions["users"]} == {"admin", *CONSUMERS}
    assert all("password" not in u for u in definitions["users"]), "RabbitMQ gets hashes only"


def test_every_manifest_file_is_part_of_its_kustomization() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        listed = {r for r in spec.get("resources", []) if not r.startswith("..")}
        files = {p.name for p in kustomization.parent.glob("*.yaml")} - {"kustomization.yaml"}
        assert files == listed, f"{kustomization.relative_to(REPO)}: not listed {sorted(files - listed)}"
