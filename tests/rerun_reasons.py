"""Why a test needed its rerun (``--reruns``, pyproject.toml addopts).

pytest-rerunfailures reports a failed first try only as ``RERUN <test>``: when the
second try passes, the first one's reason (its traceback, or pytest-timeout's stacks of
where it hung) is lost, and an intermittent failure cannot be looked into afterwards.
Loaded with ``-p tests.rerun_reasons``, this keeps it: each failed try that is run again
is written to ``var/test-artifacts/reruns/`` and its last lines are printed in a
"reasons of the reruns" section at the end of the run (with xdist, where the
controller receives the workers' reports). A report section whose title starts with
:data:`STATE` (what a test's directory adds at a failure, e.g. the VMs' phases in the
database for a browser test, ``tests/e2e/conftest.py``) follows the traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts" / "reruns"
SHOWN_LINES = 60
STATE = "state at the failure"

_reasons: list[tuple[str, str, str]] = []


def pytest_runtest_logreport(report) -> None:
    if report.outcome != "rerun":
        return
    text = report.longreprtext or "(no traceback)"
    for title, content in report.sections:
        if title.startswith(STATE):
            text += f"\n{title}:\n{content}"
    _reasons.append((report.nodeid, report.when, text))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", report.nodeid)[-150:]
    (ARTIFACTS / f"{safe}-{report.when}.txt").write_text(
        f"{report.nodeid} ({report.when})\n{text}\n"
    )


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter) -> None:
    if not _reasons:
        return
    terminalreporter.section("reasons of the reruns")
    for nodeid, when, text in _reasons:
        lines = text.splitlines()
        cut = len(lines) - SHOWN_LINES
        terminalreporter.write_line(f"{nodeid} ({when}), first try:")
        if cut > 0:
            terminalreporter.write_line(f"  … {cut} lines above, in {ARTIFACTS}")
        for line in lines[-SHOWN_LINES:]:
            terminalreporter.write_line(f"  {line}")
