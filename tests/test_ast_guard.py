"""A failure pytest cannot draw (CPython 3.11.7's ``ast.parse`` SystemError) is still one
failed test, not the end of the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent

# The sub-run's ast.parse fails as CPython 3.11.7's does, on the test file only.
CONFTEST = """
import ast, os
from tests import ast_guard

real = ast.parse

def broken(source, *args, **kwargs):
    if "BREAK-AST" in str(source):
        raise SystemError("AST constructor recursion depth mismatch (before=78, after=133)")
    return real(source, *args, **kwargs)

def pytest_configure(config):
    ast.parse = broken
    if os.environ.get("GUARD") == "1":
        ast_guard.install(force=True)
"""

TEST = """
# BREAK-AST
def test_fails():
    value = 1
    assert value == 2

def test_passes():
    assert True
"""


def run(tmp_path: Path, guard: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_sub.py").write_text(TEST)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        "PYTHONPATH": str(ROOT),
        "GUARD": guard,
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", os.devnull, "--rootdir", str(tmp_path)]
        + ["-p", "no:cacheprovider", "-p", "no:django", "--assert=plain", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def test_without_the_guard_the_whole_run_ends_in_an_internal_error(tmp_path):
    result = run(tmp_path, "0")
    assert "INTERNALERROR" in result.stdout + result.stderr
    assert "AST constructor recursion depth mismatch" in result.stdout + result.stderr


def test_with_the_guard_it_is_one_failed_test_with_its_line_and_the_run_goes_on(tmp_path):
    result = run(tmp_path, "1")
    out = result.stdout + result.stderr
    assert "INTERNALERROR" not in out, out[-3000:]
    assert "1 failed, 1 passed" in out
    assert "assert value == 2" in out  # the failing line is still shown
