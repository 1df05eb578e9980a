"""Page-speed benchmark: the HTML pages of one tenant with 10,000 VMs.

Issue 16's goal: with 10,000 VMs in one tenant, the VM list page p99 ≤ 100 ms and the
tenant overview ≤ 200 ms. The portal runs as in production (``ISOTOPE_DEBUG`` off,
compressed manifest static files after ``collectstatic``, one uvicorn process); 10,000
VM rows and their quota reservations are bulk-inserted (no libvirt is needed to list).
A signed-in session fetches, sequentially, the list page at random page numbers, the
list filtered by a name search, and the overview.

Production also means the database as a running portal has it: after the bulk insert the
bench runs ``VACUUM ANALYZE`` (autovacuum would within a minute; without statistics the
planner takes the 10,000-row tenant for a 4-row one and sorts every row for each page),
and the web process keeps a connection pool of ``--db-pool`` connections, as
``deploy/isotope.env.example`` sets ``ISOTOPE_DB_POOL_SIZE=4`` (``--db-pool 0``: a new
PostgreSQL connection per request, the embedded default).

Baseline in the same run: the database's share of each page. The page is rendered once
in this process under Django's query capture, and the exact SQL it ran (session, user,
membership, count, page, phase counts, quota …; its reads, the SELECTs) is
replayed over one raw psycopg connection as many times as the page was fetched.
``ratio`` is page / its SQL.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/pages.py \
        [--vms 10000] [--requests 200] [--db-pool 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from importlib import import_module
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (  # noqa: E402
    PRODUCTION,
    bench_database,
    django_env,
    free_port,
    percentiles,
    seed_vms,
    spawn,
    stop,
    wait_http,
)
from bench.vm_create import setup_django  # noqa: E402


def session_cookie(user) -> str:
    """A signed-in session for ``user``, made as Django's login makes one."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


def page_sql(user, path: str) -> list[str]:
    """The SQL statements one render of ``path`` runs, exactly as sent."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(user)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].lstrip().upper().startswith("SELECT")
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fetch(port: int, cookie: str, paths: list[str], marker: str, pid: int = 0) -> dict:
    """Wall time per page (percentiles) and, with the server's ``pid``, the server's CPU
    per page: on a loaded machine the wall time mostly measures the neighbours."""
    timings = []
    cpu_before = cpu_seconds(pid) if pid else 0.0
    for path in paths:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", headers={"Cookie": cookie}
        )
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read().decode()
        timings.append(time.perf_counter() - start)
        assert marker in body, f"{path}: {marker!r} not in the page (signed out?)"
    result = percentiles(timings)
    if pid:
        result["server_cpu_ms_per_page"] = round(
            (cpu_seconds(pid) - cpu_before) * 1000 / len(paths), 2
        )
    return result


def replay(database_url: str, statements: list[str], times: int) -> dict:
    import psycopg

    timings = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(times):
            start = time.perf_counter()
            for sql in statements:
                conn.execute(sql).fetchall()  # no parameters: sent as the page sent it
            timings.append(time.perf_counter() - start)
    return percentiles(timings)


def analyze(database_url: str) -> None:
    """Statistics and the visibility map for the freshly inserted rows, as autovacuum
    keeps them on a running database."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--per-page", type=int, default=0, help="rows per list page")
    parser.add_argument(
        "--db-pool", type=int, default=4, help="ISOTOPE_DB_POOL_SIZE of the web process"
    )
    args = parser.parse_args()

    database_url = bench_database("isotope_bench_pages")
    os.environ["SECRET_KEY"] = PRODUCTION["SECRET_KEY"]  # the server must read our session
    setup_django(database_url)
    from compute.listing import DEFAULT_PER_PAGE

    tenant, user = seed_vms(args.vms, role="operator")
    analyze(database_url)
    rng = random.Random(11)
    per_page = args.per_page or DEFAULT_PER_PAGE
    rows = f"&per_page={args.per_page}" if args.per_page else ""
    pages = args.vms // per_page
    base = f"/t/{tenant.slug}"
    kinds = {
        "vm_list": (
            [f"{base}/vms/?page={rng.randint(1, pages)}{rows}" for _ in range(args.requests)],
            "vm-",
        ),
        "vm_list_search": (
            [f"{base}/vms/?q=vm-{rng.randrange(args.vms):05d}" for _ in range(args.requests)],
            "vm-",
        ),
        "overview": ([f"{base}/"] * args.requests, "bench"),
    }
    env = django_env(
        database_url,
        ISOTOPE_LOG_LEVEL="WARNING",
        ISOTOPE_DB_POOL_SIZE=str(args.db_pool),
        **PRODUCTION,
    )
    # The production static storage (hashed, compressed names) needs its manifest.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], env=env, check=True
    )
    port = free_port()
    web = spawn(
        [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--port", str(port)]
        + ["--log-level", "warning", "--lifespan", "off"],
        env,
        "pages-web.log",
    )
    cookie = session_cookie(user)
    results = {}
    try:
        wait_http(port)
        for name, (paths, marker) in kinds.items():
            fetch(port, cookie, paths[:10], marker)  # warm up
            results[name] = {"page": fetch(port, cookie, paths, marker, web.pid)}
    finally:
        stop(web)
    for name, (paths, _) in kinds.items():
        statements = page_sql(user, paths[0])
        sql = replay(database_url, statements, args.requests)
        results[name].update(
            {
                "queries": len(statements),
                "baseline_same_sql": sql,
                "ratio_p50": round(results[name]["page"]["p50_ms"] / max(sql["p50_ms"], 0.001), 1),
                "ratio_p99": round(results[name]["page"]["p99_ms"] / max(sql["p99_ms"], 0.001), 1),
            }
        )
    print(
        json.dumps(
            {
                "benchmark": "pages",
                "vms": args.vms,
                "requests": args.requests,
                "page_size": per_page,
                "debug": False,
                "web_processes": 1,
                "db_pool_size": args.db_pool,
                "analyzed": True,
                "goals_ms": {"vm_list_p99": 100, "overview_p99": 200},
                **results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
