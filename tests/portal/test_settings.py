"""Production settings: secrets are required and ``check --deploy`` passes."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    unset = {"ISOTOPE_DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    base = {k: v for k, v in os.environ.items() if k not in unset}
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="isotope.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_without_a_secret_key_refuses_to_start():
    result = manage("check", ALLOWED_HOSTS="isotope.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_development_generates_a_secret_once(tmp_path):
    first = manage("check", ISOTOPE_DEBUG="1", ISOTOPE_VAR=str(tmp_path))
    assert first.returncode == 0, first.stderr
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50
    manage("check", ISOTOPE_DEBUG="1", ISOTOPE_VAR=str(tmp_path))
    assert (tmp_path / "secret_key").read_text() == key
