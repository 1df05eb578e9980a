"""CI is strict: one reading of CI / ISOTOPE_REQUIRE_INFRA (Python and shell agree), and
tests/strict.py fails skipped tests and missing tiers. Each case runs pytest (or bash) in
a subprocess with a controlled environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.parallel import SHARED_TIERS, worker_redis_url
from tests.strict import TIERS
from tools.infra import env_flag

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
VALUES = ["", "0", "false", "FALSE", " no ", "off", "Off", "1", "true", "True", "yes", "on"]
VALUES += ["github-actions", " TRUE\n"]


def clean_env(**extra: str) -> dict:
    # An inner suite is its own pytest session: when this one runs on an xdist worker,
    # the worker's own variables (PYTEST_XDIST_WORKER, ..., its channel prefix) would make
    # the inner controller believe it is a worker too.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "ISOTOPE_REQUIRE_INFRA", "ISOTOPE_CHANNEL_PREFIX")
        and not k.startswith("PYTEST_XDIST_")
    }
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.mark.parametrize("value", VALUES)
def test_python_and_shell_read_a_flag_the_same_way(value, monkeypatch):
    monkeypatch.setenv("ISOTOPE_X", value)
    shell = subprocess.run(
        ["bash", "-c", "source scripts/lib.sh && env_flag ISOTOPE_X && echo yes || echo no"],
        cwd=ROOT,
        env=clean_env(ISOTOPE_X=value, ISOTOPE_VAR=str(ROOT / "var")),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    expected = value.strip().lower() not in ("", "0", "false", "no", "off")
    assert env_flag("ISOTOPE_X") is expected
    assert shell == ("yes" if expected else "no")


def run_suite(tmp_path: Path, body: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    markers = "\n".join(f"    {tier}: tier" for tier in TIERS)
    (tmp_path / "pytest.ini").write_text(f"[pytest]\nmarkers =\n{markers}\n")
    (tmp_path / "test_sample.py").write_text("import pytest\n\n" + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.strict", "-p", "no:django"]
        + ["-p", "no:cacheprovider", "-q", "-rA", *args, str(tmp_path)],
        cwd=tmp_path,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


SKIPPING = """
    @pytest.mark.unit
    def test_runs():
        pass

    @pytest.mark.unit
    def test_skips():
        pytest.skip("no cluster here")

    @pytest.mark.unit
    @pytest.mark.skipif(True, reason="marked away")
    def test_marked():
        pass
"""


def test_without_requirements_a_skip_is_a_skip(tmp_path):
    result = run_suite(tmp_path, SKIPPING, CI="false", ISOTOPE_REQUIRE_INFRA="0")
    assert result.returncode == 0, result.stdout
    assert "1 passed, 2 skipped" in result.stdout


@pytest.mark.parametrize("env", [{"ISOTOPE_REQUIRE_INFRA": "1"}, {"CI": "true"}])
def test_when_infrastructure_is_required_every_skip_fails_with_its_reason(tmp_path, env):
    result = run_suite(tmp_path, SKIPPING, **env)
    assert result.returncode == 1, result.stdout
    out = result.stdout
    assert "requires every test to run: no cluster here" in out
    assert "requires every test to run: marked away" in out
    assert "1 passed" in out and "skipped" not in out.splitlines()[-1]


def test_in_ci_a_tier_without_tests_fails_the_run(tmp_path):
    result = run_suite(
        tmp_path,
        """
        @pytest.mark.unit
        def test_runs():
            pass
        """,
        CI="true",
    )
    assert result.returncode == 1, result.stdout
    assert "CI: tiers without a passing test" in result.stdout
    assert "kubernetes               0 collected     0 passed   <- FAILS the run" in result.stdout
    assert "unit                     1 collected     1 passed\n" in result.stdout


def test_in_ci_a_tier_whose_tests_all_fail_or_skip_is_missing_too(tmp_path):
    body = "".join(
        f"""
        @pytest.mark.{tier}
        def test_{tier}():
            {"pytest.skip('down')" if tier == "qemu" else "pass"}
        """
        for tier in TIERS
    )
    result = run_suite(tmp_path, body, CI="true")
    assert result.returncode == 1, result.stdout
    assert "qemu                     1 collected     0 passed   <- FAILS the run" in result.stdout


def test_in_ci_every_tier_passing_is_green(tmp_path):
    body = "".join(
        f"""
        @pytest.mark.{tier}
        def test_{tier}():
            pass
        """
        for tier in TIERS
    )
    result = run_suite(tmp_path, body, CI="1")
    assert result.returncode == 0, result.stdout
    assert "CI: every tier ran" in result.stdout


# Under pytest-xdist (tests/parallel.py): the workers run the tests, the controller counts.
def xdist(workers: int = 2) -> tuple[str, ...]:
    return ("-p", "tests.parallel", "-n", str(workers), "--dist", "loadgroup")


XDIST = xdist()


def test_under_xdist_the_controller_counts_every_worker_and_a_missing_tier_fails(tmp_path):
    body = "".join(
        f"""
        @pytest.mark.{tier}
        @pytest.mark.parametrize("n", range(3))
        def test_{tier}(n):
            {"pytest.skip('down')" if tier == "qemu" else "pass"}
        """
        for tier in TIERS
        if tier != "oidc"
    )
    result = run_suite(tmp_path, body, *XDIST, CI="true")
    assert result.returncode == 1, result.stdout
    out = result.stdout
    assert "bringing up nodes" in out  # xdist ran it
    assert "requires every test to run: down" in out
    assert "CI: tiers without a passing test" in out
    assert "qemu                     3 collected     0 passed   <- FAILS the run" in out
    assert "oidc                     0 collected     0 passed   <- FAILS the run" in out
    assert "unit                     3 collected     3 passed\n" in out
    assert "e2e                      3 collected     3 passed\n" in out


def test_under_xdist_every_tier_passing_is_green(tmp_path):
    body = "".join(
        f"""
        @pytest.mark.{tier}
        @pytest.mark.parametrize("n", range(4))
        def test_{tier}(n):
            pass
        """
        for tier in TIERS
    )
    result = run_suite(tmp_path, body, *XDIST, CI="true")
    assert result.returncode == 0, result.stdout
    assert "CI: every tier ran" in result.stdout
    assert "libvirt_test_driver      4 collected     4 passed\n" in result.stdout


def test_under_xdist_each_shared_infrastructure_s_tiers_run_on_one_worker_side_by_side(
    tmp_path,
):
    body = "".join(
        f"""
        @pytest.mark.{tier}
        @pytest.mark.parametrize("n", range(4))
        def test_{tier}(n):
            import os
            import time

            time.sleep({0.2 if tier in SHARED_TIERS else 0})  # keeps a shared worker busy
            with open("{tmp_path}/{tier}-%d" % n, "w") as f:
                f.write(os.environ["PYTEST_XDIST_WORKER"])
        """
        for tier in TIERS
    )
    # A test of another tier that signs in through the shared OIDC provider joins its
    # group; a test with a QEMU guest and a workload joins the libvirt nodes'.
    body += f"""
        @pytest.fixture
        def oidc_provider():
            return {{}}

        @pytest.mark.e2e
        @pytest.mark.parametrize("n", range(4))
        def test_sso(oidc_provider, n):
            import os

            with open("{tmp_path}/sso-%d" % n, "w") as f:
                f.write(os.environ["PYTEST_XDIST_WORKER"])

        @pytest.mark.e2e
        @pytest.mark.qemu
        @pytest.mark.kubernetes
        @pytest.mark.parametrize("n", range(4))
        def test_journey(n):
            import os

            with open("{tmp_path}/journey-%d" % n, "w") as f:
                f.write(os.environ["PYTEST_XDIST_WORKER"])
        """
    # Three workers: one left when each group has one.
    result = run_suite(tmp_path, body, *xdist(3))
    assert result.returncode == 0, result.stdout

    def workers(*names: str) -> set[str]:
        return {(tmp_path / f"{name}-{n}").read_text() for name in names for n in range(4)}

    libvirt_nodes = workers("qemu", "migration", "journey")
    cluster_and_provider = workers("kubernetes", "oidc", "sso")
    assert len(libvirt_nodes) == 1, libvirt_nodes
    assert len(cluster_and_provider) == 1, cluster_and_provider
    assert libvirt_nodes != cluster_and_provider, "the two groups did not run side by side"
    shared = libvirt_nodes | cluster_and_provider
    # Browser tests that reach none of it (their own Chromium, live server and test-driver
    # hosts) spread like the unit and test-driver tests.
    assert "e2e" not in SHARED_TIERS
    assert workers("e2e") - shared, "the e2e tests all waited for the shared workers"
    assert workers("unit", "libvirt_test_driver") - shared, "the unit tests all waited"


def test_under_xdist_items_sharing_a_node_id_stop_the_run_instead_of_all_but_one_vanishing(
    tmp_path,
):
    # As schemathesis's fuzz test: several items with one node id.
    (tmp_path / "conftest.py").write_text(
        "def pytest_collection_modifyitems(items):\n    items.extend([items[0]] * 2)\n"
    )
    result = run_suite(tmp_path, "def test_x():\n    pass\n", *XDIST)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "xdist would run only one of the items sharing each of these node ids" in out
    assert "test_sample.py::test_x (3 items)" in out
    assert " passed" not in result.stdout


def test_each_fuzzed_api_operation_is_a_test_of_its_own_id():
    # schemathesis gives one item per operation; pytest 9 would give them all one node id
    # (tests/conftest.py), which xdist cannot schedule and a failure report cannot name.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + ["tests/portal/test_api_fuzz.py"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    fuzz = "tests/portal/test_api_fuzz.py::test_no_request_gets_a_server_error_and_every_answer"
    assert len([i for i in ids if i.startswith(fuzz)]) > 100
    assert len(set(ids)) == len(ids), "node ids repeat"
    assert f"{fuzz}_matches_the_schema[GET /api/v1/tenants/]" in ids
    assert f"{fuzz}_matches_the_schema[POST /api/v1/tenants/{{tenant}}/virtualmachines/]" in ids


def test_under_xdist_the_tests_must_be_grouped(tmp_path):
    result = run_suite(tmp_path, "def test_x():\n    pass\n", "-p", "tests.parallel", "-n", "2")
    assert result.returncode != 0
    assert "run xdist with --dist loadgroup" in result.stdout + result.stderr


def test_each_worker_has_its_own_redis_database():
    assert worker_redis_url("redis://127.0.0.1:6379/0", "gw0") == "redis://127.0.0.1:6379/1"
    assert worker_redis_url("redis://h:1/2", "gw3") == "redis://h:1/6"
    assert worker_redis_url("redis://:pw@h:1", "gw1") == "redis://:pw@h:1/2"
    with pytest.raises(pytest.UsageError, match="run fewer workers"):
        worker_redis_url("redis://h:1/0", "gw15")


def test_each_worker_has_its_own_channel_prefix(tmp_path):
    body = """
    @pytest.mark.parametrize("n", range(2))
    def test_prefix(n):
        import os

        worker = os.environ["PYTEST_XDIST_WORKER"]
        assert os.environ["ISOTOPE_CHANNEL_PREFIX"] == f"isotope:ch:{worker}"
    """
    result = run_suite(tmp_path, body, *XDIST)
    assert result.returncode == 0, result.stdout
    assert "2 passed" in result.stdout


def test_ci_run_exports_ci_itself_whatever_the_caller_says():
    script = (ROOT / ".ci" / "run").read_text()
    # Run .ci/run's own environment lines with `make` replaced by a probe of what
    # scripts/test.sh would see, under a caller that tries to weaken it.
    probe = script.replace(
        "exec make test",
        'source scripts/lib.sh; infra_required && echo "required CI=$CI '
        'REQ=$ISOTOPE_REQUIRE_INFRA ADDOPTS=${PYTEST_ADDOPTS-unset}"',
    )
    assert probe != script, ".ci/run no longer ends with `exec make test`"
    result = subprocess.run(
        ["bash", "-c", probe],
        cwd=ROOT / ".ci",
        env=clean_env(CI="false", ISOTOPE_REQUIRE_INFRA="0", PYTEST_ADDOPTS="-m unit"),
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "required CI=true REQ=1 ADDOPTS=unset", result.stderr


def fake_checkout(tmp_path: Path, *, ruff_check_fails: bool) -> Path:
    """scripts/{test,lint,lib}.sh in a throwaway tree whose every other piece is a fake
    that records being called: bootstrap, services, tools.infra, ruff, the venv python."""
    tree = tmp_path / "checkout"
    (tree / "scripts").mkdir(parents=True)
    for name in ("test.sh", "lint.sh", "lib.sh"):
        (tree / "scripts" / name).write_text((ROOT / "scripts" / name).read_text())
    fakes = {
        "scripts/bootstrap.sh": "exit 0",
        "scripts/services.sh": 'echo "$*" >> "$(dirname "$0")/../calls"; echo fake://url',
        ".venv/bin/ruff": (
            'echo "ruff $*" >> calls\n'
            + (
                '[ "$1" = check ] && { echo "F401 unused import"; exit 1; }\n'
                if ruff_check_fails
                else ""
            )
            + "exit 0"
        ),
        ".venv/bin/python": 'echo "python $*" >> calls',
    }
    for path, body in fakes.items():
        target = tree / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"#!/usr/bin/env bash\n{body}\n")
        target.chmod(0o755)
    infra = tree / "tools" / "infra"
    infra.mkdir(parents=True)
    (tree / "tools" / "__init__.py").write_text("")
    (infra / "__init__.py").write_text("")
    (infra / "__main__.py").write_text(
        "import sys\nopen('calls', 'a').write('infra ' + ' '.join(sys.argv[1:]) + '\\n')\n"
    )
    for script in (tree / "scripts").glob("*.sh"):
        script.chmod(0o755)
    return tree


@pytest.mark.parametrize("fails", [True, False])
def test_make_test_stops_on_a_lint_failure_before_starting_anything(tmp_path, fails):
    tree = fake_checkout(tmp_path, ruff_check_fails=fails)
    env = clean_env(ISOTOPE_KEEP_INFRA="1", ISOTOPE_VAR=str(tree / "var"))
    env.pop("PYTHONPATH")  # the fake tools.infra, never the real one
    result = subprocess.run(
        ["bash", "scripts/test.sh"], cwd=tree, env=env, capture_output=True, text=True
    )
    calls = (tree / "calls").read_text()
    if fails:
        assert result.returncode == 1
        assert "lint failed: ruff check reported problems" in result.stderr
        assert "ruff format --check ." in calls, "both checks run, so one report shows all"
        assert "start postgres" not in calls and "python -m pytest" not in calls
    else:
        assert result.returncode == 0, result.stderr
        assert "infra up --strict" in calls and "python -m pytest" in calls


def test_lint_fails_on_a_tracked_file_with_conflict_markers(tmp_path):
    tree = fake_checkout(tmp_path, ruff_check_fails=False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=tree, check=True)
    (tree / "notes.md").write_text("intro\n<<<<<<< HEAD\nours\n=======\ntheirs\n>>>>>>> b\n")
    subprocess.run([*git, "add", "notes.md"], cwd=tree, check=True)
    env = clean_env()
    result = subprocess.run(
        ["bash", "scripts/lint.sh"], cwd=tree, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "notes.md:2:<<<<<<< HEAD" in result.stdout
    assert "lint failed: conflict markers" in result.stderr

    (tree / "notes.md").write_text("intro\nours\n")
    subprocess.run([*git, "add", "notes.md"], cwd=tree, check=True)
    result = subprocess.run(
        ["bash", "scripts/lint.sh"], cwd=tree, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
