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
    unset = {"ISOTOPE_DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE", "ISOTOPE_DB_PREPARE"}
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


POOL_PROBE = """
import threading
from django.db import connection

pids = []

def request():
    # What an ASGI request does: a thread of its own, its connection closed at the end.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pids.append(cursor.fetchone()[0])
    connection.close()

for _ in range(6):
    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
print(len(set(pids)))
"""


def test_the_database_pool_hands_its_connections_from_request_to_request():
    """Six requests one after the other: with a pool of two they share at most two
    server sessions; without one, each opens (and closes) its own."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    sessions = {}
    for size in ("2", "0"):
        result = manage("shell", "-c", POOL_PROBE, ISOTOPE_DEBUG="1", ISOTOPE_DB_POOL_SIZE=size)
        assert result.returncode == 0, result.stderr
        sessions[size] = int(result.stdout.strip().splitlines()[-1])
    assert sessions["2"] <= 2
    assert sessions["0"] == 6


@pytest.mark.parametrize("prefix", ["Isotope-", "1sotope-", "isotope_", "a" * 24, ""])
def test_a_namespace_prefix_kubernetes_cannot_take_refuses_to_start(prefix):
    result = manage("check", ISOTOPE_DEBUG="1", ISOTOPE_K8S_NAMESPACE_PREFIX=prefix)
    assert result.returncode != 0
    assert f"ISOTOPE_K8S_NAMESPACE_PREFIX={prefix!r}: use 1-23 lowercase" in result.stderr


def test_a_namespace_prefix_of_23_characters_starts():
    result = manage(
        "check", ISOTOPE_DEBUG="1", ISOTOPE_K8S_NAMESPACE_PREFIX="isotope-staging-eu-001-"
    )
    assert result.returncode == 0, result.stderr


PREPARE_PROBE = """
from django.db import connection

with connection.cursor() as cursor:
    for name in ("a", "b", "c", "d", "e", "f", "g"):
        # The same statement seven times on one connection, with other values each time.
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname = %s", [name])
    cursor.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%pg_class%"]
    )
    print(cursor.fetchone()[0])
"""


def test_postgresql_plans_a_repeated_statement_once_per_connection_unless_turned_off():
    """By default a statement run five times on a connection is prepared there (its plan
    kept, the values sent apart); ``ISOTOPE_DB_PREPARE=off`` (a PgBouncer in transaction
    mode) prepares nothing."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    prepared = {}
    for value in (None, "off"):
        env = {"ISOTOPE_DEBUG": "1", "ISOTOPE_DB_POOL_SIZE": "1"}
        if value is not None:
            env["ISOTOPE_DB_PREPARE"] = value
        result = manage("shell", "-c", PREPARE_PROBE, **env)
        assert result.returncode == 0, result.stderr
        prepared[value] = int(result.stdout.strip().splitlines()[-1])
    assert prepared == {None: 1, "off": 0}


@pytest.mark.parametrize("value", ["yes", "-1", "2.5", "²"])
def test_a_prepare_threshold_that_is_no_count_refuses_to_start(value):
    result = manage("check", ISOTOPE_DEBUG="1", ISOTOPE_DB_PREPARE=value)
    assert result.returncode != 0
    assert f"ISOTOPE_DB_PREPARE={value!r}: give how many runs" in result.stderr


PREPARED_AT_ONCE_PROBE = """
from django.db import connection

with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM pg_class WHERE relname = %s", ["a"])
    cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%pg_class%'")
    print(cursor.fetchone()[0])
"""


def test_migrate_runs_when_every_statement_is_prepared_at_once():
    """``ISOTOPE_DB_PREPARE=0`` prepares a statement at its first run; a migration's
    script of several commands cannot be prepared, and ``migrate`` stopped at the first
    ("cannot insert multiple commands into a prepared statement"). A statement without
    values is never prepared; one with values still is, at once."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    import psycopg
    from psycopg import sql

    scratch = f"isotope_prepare0_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    env = {
        "ISOTOPE_DEBUG": "1",
        "ISOTOPE_DB_PREPARE": "0",
        "ISOTOPE_DB_POOL_SIZE": "1",
        "DATABASE_URL": url.rsplit("/", 1)[0] + f"/{scratch}",
    }
    try:
        migrated = manage("migrate", "--no-input", **env)
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        probe = manage("shell", "-c", PREPARED_AT_ONCE_PROBE, **env)
        assert probe.returncode == 0, probe.stderr
        assert int(probe.stdout.strip().splitlines()[-1]) == 1
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(scratch)))
