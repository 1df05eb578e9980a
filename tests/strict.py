"""Strict runs: the pytest plugin that keeps CI from passing with tiers missing.

Loaded by ``tests/conftest.py``; reads the environment only through
``tools.infra.infra_required`` / ``in_ci`` (the same rule as ``scripts/lib.sh``).

- When infrastructure is required (CI, or ``ISOTOPE_REQUIRE_INFRA``), a test that skips
  (a ``skip``/``skipif`` mark, ``pytest.skip``, ``importorskip``) is reported as a
  failure with its reason: nothing may silently not run.
- In CI every tier (the markers in ``TIERS``, declared in pyproject.toml) must have at
  least one passing test; a tier that collected none, or whose tests all failed or were
  deselected, fails the session with a summary of every tier's counts.
- Under pytest-xdist (``tests/parallel.py``) the controller, which sees every worker's
  reports, counts and decides; a worker, which runs only part of the tiers, does not.
  The controller collects no items itself, so there a test counts as collected when its
  setup is reported (the same number, unless the run stops early with ``-x``).
"""

from __future__ import annotations

from collections import Counter

import pytest

from tools.infra import in_ci, infra_required

TIERS = ("unit", "libvirt_test_driver", "qemu", "migration", "kubernetes", "oidc", "e2e")

_collected: Counter = Counter()
_passed: Counter = Counter()
_missing_key = pytest.StashKey[list]()
_state = {"controller": False}


def _reason(report: pytest.TestReport) -> str:
    if isinstance(report.longrepr, tuple):  # (path, line, "Skipped: reason")
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and infra_required():
        report.outcome = "failed"
        report.longrepr = (
            f"skipped, but CI / ISOTOPE_REQUIRE_INFRA requires every test to run: {_reason(report)}"
        )
    return report


def pytest_configure(config):
    declared = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    undeclared = [tier for tier in TIERS if tier not in declared]
    if undeclared:
        raise pytest.UsageError(f"tier markers not declared in pyproject.toml: {undeclared}")
    _state["controller"] = _controller(config)


def _worker(config) -> bool:
    return hasattr(config, "workerinput")


def _controller(config) -> bool:
    """True in the process that hands tests to xdist workers (and runs none itself)."""
    return (
        config.pluginmanager.hasplugin("xdist")
        and config.getoption("dist", "no") != "no"
        and not _worker(config)
    )


def pytest_collection_finish(session):
    if _controller(session.config):
        return
    for item in session.items:
        for tier in TIERS:
            if item.get_closest_marker(tier) is not None:
                _collected[tier] += 1


def pytest_runtest_logreport(report):
    if report.when == "setup" and _state["controller"]:
        for tier in TIERS:
            if tier in report.keywords:
                _collected[tier] += 1
    if report.when == "call" and report.passed:
        for tier in TIERS:
            if tier in report.keywords:
                _passed[tier] += 1


def pytest_sessionfinish(session, exitstatus):
    if not in_ci() or exitstatus == pytest.ExitCode.INTERRUPTED or _worker(session.config):
        return
    missing = [tier for tier in TIERS if _passed[tier] == 0]
    session.config.stash[_missing_key] = missing
    if missing and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    missing = config.stash.get(_missing_key, None)
    if missing is None:
        return
    if missing:
        terminalreporter.write_sep("=", "CI: tiers without a passing test", red=True, bold=True)
    else:
        terminalreporter.write_sep("=", "CI: every tier ran", green=True)
    for tier in TIERS:
        line = f"{tier:<20} {_collected[tier]:>5} collected {_passed[tier]:>5} passed"
        terminalreporter.write_line(line + ("   <- FAILS the run" if tier in missing else ""))
