"""deploy/kubernetes against the local API server: every manifest applied with a
server-side dry run (``dryRun=All``: admission, defaulting, schema validation and Pod
Security, nothing stored) into a namespace made from ``namespace.yaml``, with no error
and no warning; ``kubectl kustomize`` renders the kustomization."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from tests.compute.kubernetes.conftest import k8s_state
from tests.conftest import require

pytestmark = pytest.mark.kubernetes

MANIFESTS = Path(settings.BASE_DIR) / "deploy" / "kubernetes"


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFESTS.rglob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture
def kubectl():
    state = k8s_state()
    require(bool(state.get("ok")), f"local Kubernetes is not ready: {state.get('reason')}")
    binary = shutil.which("kubectl")
    require(binary is not None, "kubectl is not installed")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [binary, "--kubeconfig", state["kubeconfig"], *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@pytest.fixture
def namespace(kubectl):
    """A real namespace with namespace.yaml's labels (so its Pod Security level applies)."""
    (spec,) = yaml.safe_load_all((MANIFESTS / "namespace.yaml").read_text())
    name = f"isotope-dry-{uuid.uuid4().hex[:8]}"
    spec["metadata"]["name"] = name
    made = kubectl("create", "-f", "-", stdin=yaml.safe_dump(spec))
    assert made.returncode == 0, made.stderr
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def dry_run(kubectl, documents: list[dict], namespace: str) -> subprocess.CompletedProcess:
    for document in documents:
        if document["kind"] != "Namespace":
            document["metadata"]["namespace"] = namespace
    return kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(documents))


def test_every_manifest_passes_a_server_side_dry_run(kubectl, namespace):
    files = manifest_files()
    assert {p.name for p in files} >= {
        "namespace.yaml",
        "config.yaml",
        "web.yaml",
        "worker.yaml",
        "beat.yaml",
        "watcher.yaml",
        "migrate.yaml",
        "host-worker.yaml",
    }
    kinds = set()
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text()))
        kinds |= {d["kind"] for d in documents}
        result = dry_run(kubectl, documents, namespace)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"
        assert result.stderr == "", f"{path.name}: {result.stderr}"  # e.g. PodSecurity
        assert result.stdout.count("(server dry run)") == len(documents), result.stdout
    assert kinds >= {
        "Namespace",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "Ingress",
        "Job",
    }
    # Nothing was stored.
    listed = kubectl(
        "get", "deployments,services,ingresses,configmaps", "-n", namespace, "-o", "name"
    )
    assert "isotope" not in listed.stdout


def test_the_dry_run_reports_what_the_namespace_forbids(kubectl, namespace):
    """The check above is meaningful: a root pod in the namespace draws the warning."""
    (web, _service, _ingress) = yaml.safe_load_all((MANIFESTS / "web.yaml").read_text())
    del web["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    web["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    result = dry_run(kubectl, [web], namespace)
    assert "would violate PodSecurity" in result.stderr


def test_the_kustomization_renders_its_resources_with_the_image_set(kubectl):
    rendered = kubectl("kustomize", str(MANIFESTS))
    assert rendered.returncode == 0, rendered.stderr
    documents = list(yaml.safe_load_all(rendered.stdout))
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {
        "isotope-web",
        "isotope-worker",
        "isotope-beat",
        "isotope-watcher",
    }
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    for deployment in deployments:
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{image['newName']}:{image['newTag']}"
