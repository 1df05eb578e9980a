"""tests.rerun_reasons: a test that passes on its rerun still says why its first try
failed, at the end of the run and in a file, with and without xdist, with the state its
directory's conftest reported at the failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import rerun_reasons

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent

FLAKY = """
import os
from pathlib import Path

def test_fails_once():
    mark = Path(os.environ["FLAKY_MARK"])
    if not mark.exists():
        mark.write_text("tried")
        assert 1 == 2, "the first try's own reason"
"""

# What a directory's conftest adds to a failed test's report (tests/e2e/conftest.py).
CONFTEST = """
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.when == "call" and report.failed:
        report.sections.append(("state at the failure: the VMs", "acme/web1: phase Starting"))
        report.sections.append(("Captured log call", "a log line not shown"))
"""


@pytest.mark.parametrize("mode, workers", [("serial", []), ("xdist", ["-n", "2"])])
def test_the_first_try_s_reason_is_kept(tmp_path, mode, workers):
    # A file name of its own per case: the two cases may run at once on two workers,
    # and each reads and removes its own kept reason from the one artifacts folder.
    module = f"test_flaky_once_{mode}.py"
    (tmp_path / module).write_text(FLAKY)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLAKY_MARK": str(tmp_path / "mark")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", os.devnull, "-p", "no:cacheprovider"]
        + ["-p", "no:django", "-p", "tests.rerun_reasons", "--reruns", "1", "-q", *workers]
        + [module],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 rerun" in run.stdout
    summary = run.stdout.split("reasons of the reruns", 1)[1]
    assert f"{module}::test_fails_once (call), first try:" in summary
    assert "AssertionError: the first try's own reason" in summary
    assert "state at the failure: the VMs:\n  acme/web1: phase Starting" in summary
    assert "a log line not shown" not in summary
    kept = rerun_reasons.ARTIFACTS / f"{module}_test_fails_once-call.txt"
    assert "the first try's own reason" in kept.read_text()
    kept.unlink()
