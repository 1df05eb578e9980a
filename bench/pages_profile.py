"""Where the VM list page's CPU goes: cProfile over list pages of the tenant that
``bench/pages.py`` left behind (its database ``isotope_bench_pages`` is kept after a run).

One process with the production settings (``ISOTOPE_DEBUG`` off, so the same template
loaders and static storage as ``bench/pages.py``'s server); the signed-in bench user
fetches random list pages through Django's test client (the WSGI handler: the view runs
in the profiled thread). ``--page search`` profiles the list searched by one name (a
one-row page: mostly the base layout every page pays) and ``--page overview`` the
tenant overview. Prints the CPU per page without the profiler and the page's SQL
statements, then the top functions by cumulative and by own CPU time, and saves ``var/pages.prof``.

    DATABASE_URL=postgres://... .venv/bin/python bench/pages_profile.py [--requests 100]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--page",
        choices=("list", "search", "overview"),
        default="list",
        help="random list pages, the list searched by one name (one row), or the overview",
    )
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        sys.exit("DATABASE_URL must point at the PostgreSQL server bench/pages.py used")
    os.environ.update(
        {
            "DATABASE_URL": urlunsplit(urlsplit(base)._replace(path="/isotope_bench_pages")),
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "ISOTOPE_DEBUG": "0",
            "ISOTOPE_HTTPS": "0",
            "ISOTOPE_LOG_LEVEL": "WARNING",
            "SECRET_KEY": "bench-" + "x" * 50,
        }
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from compute.listing import DEFAULT_PER_PAGE
    from compute.models import VirtualMachine

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username="bench"))
    vms = VirtualMachine.objects.filter(tenant__slug="bench").count()
    pages = max(1, vms // DEFAULT_PER_PAGE)
    rng = random.Random(3)
    paths = {
        "list": [f"/t/bench/vms/?page={rng.randint(1, pages)}" for _ in range(args.requests)],
        "search": [f"/t/bench/vms/?q=vm-{rng.randrange(vms):05d}" for _ in range(args.requests)],
        "overview": ["/t/bench/"] * args.requests,
    }[args.page]
    for path in paths[:10]:  # warm up: templates compiled, caches filled
        assert client.get(path).status_code == 200
    start = time.process_time()
    for path in paths:
        client.get(path)
    cpu_ms = (time.process_time() - start) * 1000 / len(paths)
    with CaptureQueriesContext(connection) as captured:
        client.get(paths[0])
    print(f"{args.page}: CPU per page without the profiler: {cpu_ms:.1f} ms")
    print(f"SQL statements per page: {len(captured.captured_queries)}")
    for query in captured.captured_queries:
        print("  ", query["sql"][:160])
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    for path in paths:
        client.get(path)
    profile.disable()
    profile.dump_stats(str(ROOT / "var" / "pages.prof"))
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
