"""List benchmark: one page of a tenant's 10,000 VMs through the REST API.

The real stack serves the requests (uvicorn subprocess with production settings:
``DEBUG`` off as ``deploy/`` runs it, since 2026-12-05; Django, PostgreSQL); 10,000 VM
rows are bulk-inserted (no libvirt needed to list). Pages of 50 at offsets spread over
the whole list are fetched sequentially with a token; baseline in the same run: the
same page as one raw SQL query over psycopg (what the database alone costs).

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/api_list.py \
        [--vms 10000] [--requests 300] [--limit 50]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.request
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


def seed(vms: int) -> str:
    """``vms`` VMs in the tenant ``bench`` and a viewer's API token."""
    from tenants import services

    _, user = seed_vms(vms, role="viewer")
    _, key = services.token_create(user=user, name="bench")
    return key


def api_pages(port: int, key: str, offsets: list[int], limit: int) -> dict:
    timings = []
    for offset in offsets:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/tenants/bench/virtualmachines/"
            f"?limit={limit}&offset={offset}",
            headers={"Authorization": f"Token {key}"},
        )
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        timings.append(time.perf_counter() - start)
        assert len(body["items"]) == min(limit, body["count"] - offset), body["count"]
    return percentiles(timings)


def raw_pages(database_url: str, offsets: list[int], limit: int) -> dict:
    import psycopg

    timings = []
    with psycopg.connect(database_url) as conn:
        for offset in offsets:
            start = time.perf_counter()
            rows = conn.execute(
                "SELECT v.*, i.name, h.name FROM compute_virtualmachine v "
                "JOIN compute_image i ON i.id = v.image_id "
                "LEFT JOIN compute_host h ON h.id = v.host_id "
                "JOIN tenants_tenant t ON t.id = v.tenant_id WHERE t.slug = %s "
                "ORDER BY v.name LIMIT %s OFFSET %s",
                ("bench", limit, offset),
            ).fetchall()
            timings.append(time.perf_counter() - start)
            assert len(rows) == limit
    return percentiles(timings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()

    database_url = bench_database("isotope_bench_list")
    setup_django(database_url)
    key = seed(args.vms)
    rng = random.Random(7)
    offsets = [rng.randrange(0, args.vms - args.limit) for _ in range(args.requests)]
    env = django_env(database_url, ISOTOPE_LOG_LEVEL="WARNING", **PRODUCTION)
    port = free_port()
    web = spawn(
        [sys.executable, "-m", "uvicorn", "portal.asgi:application", "--port", str(port)]
        + ["--log-level", "warning", "--lifespan", "off"],
        env,
        "api_list-web.log",
    )
    try:
        wait_http(port)
        api_pages(port, key, offsets[:10], args.limit)  # warm up connections and caches
        api = api_pages(port, key, offsets, args.limit)
    finally:
        stop(web)
    raw = raw_pages(database_url, offsets, args.limit)
    print(
        json.dumps(
            {
                "benchmark": "api_list",
                "vms": args.vms,
                "page": args.limit,
                "requests": args.requests,
                "server_debug": PRODUCTION["ISOTOPE_DEBUG"] == "1",
                "api_page": api,
                "baseline_raw_sql_page": raw,
                "ratio_p50": round(api["p50_ms"] / max(raw["p50_ms"], 0.001), 1),
                "ratio_p99": round(api["p99_ms"] / max(raw["p99_ms"], 0.001), 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
