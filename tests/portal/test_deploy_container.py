"""deploy/container: the image's entrypoint roles are the ones the Kubernetes manifests
run (and the Procfile's, for the worker's queues), and the entrypoint's web and migrate
roles really start from a checkout laid out as the image lays it out. The image itself
is not built here (no container engine on this machine)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from compute.queues import host_queue
from tests.conftest import _free_port, postgres_only, wait_for
from tests.portal.test_deploy_nginx import stop
from tests.portal.test_web_tier import database_url_here, procfile_command

ROOT = Path(settings.BASE_DIR)
CONTAINER = ROOT / "deploy" / "container"
ENTRYPOINT = CONTAINER / "entrypoint.sh"
KUBERNETES = ROOT / "deploy" / "kubernetes"


def entrypoint_roles() -> set[str]:
    """The ``case`` labels of the entrypoint (``*`` excluded)."""
    body = ENTRYPOINT.read_text().split('case "$role" in', 1)[1].split("esac", 1)[0]
    return set(re.findall(r"^  ([a-z]+)\)$", body, re.MULTILINE))


def instruction(name: str) -> list[str]:
    """The last ``name`` instruction of the Containerfile's final stage, as words."""
    lines = (CONTAINER / "Containerfile").read_text().split("\nFROM ")[-1].splitlines()
    values = [line.split(None, 1)[1] for line in lines if line.startswith(f"{name} ")]
    assert values, f"no {name} in the final stage"
    value = values[-1]
    return json.loads(value) if value.startswith("[") else value.split()


def pod_containers() -> list[tuple[str, str, dict]]:
    """(file, kind, container) of every pod template in deploy/kubernetes."""
    found = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] in ("Deployment", "Job"):
                for container in document["spec"]["template"]["spec"]["containers"]:
                    found.append((path.name, document["kind"], container))
    return found


@pytest.mark.unit
def test_the_manifests_run_exactly_the_entrypoints_roles():
    roles = entrypoint_roles()
    assert roles == {"web", "worker", "beat", "watcher", "migrate"}
    containers = pod_containers()
    used = {container["args"][0] for _, _, container in containers}
    assert used == roles
    for name, kind, container in containers:
        assert container["args"][0] in roles, name
        assert "command" not in container, f"{name}: the image's entrypoint picks the command"
        if kind == "Job":
            assert container["args"] == ["migrate"]
    deployments = {c["args"][0] for _, kind, c in containers if kind == "Deployment"}
    assert deployments == {"web", "worker", "beat", "watcher"}


@pytest.mark.unit
def test_the_containerfile_runs_the_entrypoint_as_a_non_root_user():
    assert instruction("ENTRYPOINT") == ["/opt/isotope/deploy/container/entrypoint.sh"]
    assert instruction("CMD") == ["web"]
    assert instruction("WORKDIR") == ["/opt/isotope"]
    user = instruction("USER")[0].split(":")[0]
    assert user not in ("root", "0")
    uid = re.search(r"useradd .*--uid (\d+)", (CONTAINER / "Containerfile").read_text())
    for name, _, container in pod_containers():
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
    for path in KUBERNETES.rglob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] in ("Deployment", "Job"):
                pod = document["spec"]["template"]["spec"]["securityContext"]
                assert pod["runAsUser"] == int(uid.group(1)), path.name
    port = int(instruction("EXPOSE")[0])
    web = [c for _, _, c in pod_containers() if c["args"] == ["web"]]
    assert [p["containerPort"] for c in web for p in c["ports"]] == [port]


@pytest.mark.unit
def test_worker_queues_and_probes_follow_the_entrypoints_naming():
    default = re.search(r"queues=\$\{1:-([^}]+)\}", ENTRYPOINT.read_text()).group(1)
    procfile = procfile_command("worker")
    assert default == procfile[procfile.index("-Q") + 1]
    for name, _, container in pod_containers():
        if container["args"][0] != "worker":
            continue
        queues = container["args"][1]
        assert set(queues.split(",")) <= set(default.split(",")) | {host_queue("node1")}, name
        # The entrypoint names a worker after its first queue: the probe pings that name.
        ping = container["livenessProbe"]["exec"]["command"][-1]
        assert f'-d "{queues.split(",")[0]}@$HOSTNAME"' in ping, name
    unit = (ROOT / "deploy" / "systemd" / "isotope-host-worker@.service").read_text()
    assert f"-Q {host_queue('%i')} " in unit


def entrypoint_env(**extra) -> dict:
    """The environment of the image (venv first on PATH), production settings."""
    env = {key: value for key, value in os.environ.items() if key != "ISOTOPE_DEBUG"}
    env.update(
        PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}",
        SECRET_KEY="entrypoint-test-" + "x" * 40,
        ALLOWED_HOSTS="localhost",
        DATABASE_URL=database_url_here(),
        ISOTOPE_LOG_LEVEL="WARNING",
        **extra,
    )
    return env


@pytest.mark.unit
@pytest.mark.django_db(transaction=True)
def test_the_migrate_role_runs_the_migrations():
    postgres_only()
    done = subprocess.run(
        [str(ENTRYPOINT), "migrate"],
        cwd=ROOT,
        env=entrypoint_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "No migrations to apply" in done.stdout


def status(url: str) -> int:
    request = urllib.request.Request(url, headers={"Host": "localhost"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.mark.unit
@pytest.mark.django_db(transaction=True)
def test_the_web_role_answers_the_probe_over_plain_http(tmp_path):
    """What the web Deployment's readiness probe sees: /healthz answers 200 over plain
    HTTP with production settings, while pages redirect to HTTPS."""
    postgres_only()
    port = _free_port()
    env = entrypoint_env(PORT=str(port), ISOTOPE_WEB_PROCESSES="1")
    env.pop("ISOTOPE_WEB_BIND", None)
    web = subprocess.Popen(
        [str(ENTRYPOINT), "web"],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "web.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: status(base + "/healthz") == 200, 60, message="web role /healthz")
        opener = urllib.request.build_opener(NoRedirect)
        request = urllib.request.Request(base + "/api/v1/", headers={"Host": "localhost"})
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(request, timeout=10)
        assert redirect.value.code == 301
        assert redirect.value.headers["Location"].startswith("https://localhost/")
    finally:
        stop(web)


@pytest.mark.unit
def test_the_images_collectstatic_step_succeeds_with_production_settings(tmp_path):
    """The Containerfile's collectstatic (manifest storage, every source map found)."""
    step = next(
        line
        for line in (CONTAINER / "Containerfile").read_text().splitlines()
        if "collectstatic" in line
    )
    assert step.strip().startswith("RUN SECRET_KEY=collectstatic-only python manage.py")
    env = entrypoint_env(ISOTOPE_VAR=str(tmp_path))
    done = subprocess.run(
        ["python", "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((tmp_path / "staticfiles" / "staticfiles.json").read_text())
    assert "vendor/chartjs/chart.umd.min.js" in manifest["paths"]
