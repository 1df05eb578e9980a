"""CPU per VM create on the accept path (API POST → 202), in one process.

Each request goes through the portal's ASGI application as uvicorn hands it over
(``portal.asgi_http``'s handler, with what start-up loaded frozen out of the garbage
collector's scans as ``portal.asgi`` does; no socket: the middleware, token authentication, the
DRF view, the service, its commit and what runs on commit: the Celery enqueue and the
live publish), one at a time, and is charged the CPU time of this process (every
thread) it took: ``time.process_time()`` before and after. PostgreSQL's and Redis's own
CPU are not counted (other processes). Baseline in the same run, interleaved request by
request: the same body and token posted to the trivial DRF view of
``bench/trivial_urls.py`` (middleware, token auth, permission check, no database).
Production settings as ``deploy/`` sets them (``DEBUG`` off: no query log; a connection
pool of 4 per process, ``ISOTOPE_DB_POOL_SIZE``). No worker runs: the VMs stay Pending.
Two kinds of create, interleaved with the trivial request: ``create``, while a provision
dispatch is on its way (no worker runs here, so after the first it always is: the best
case, what a create costs when creates arrive faster than a worker's dispatch drains
them, with no Celery message of its own, ``compute.services.dispatch``) and
``create_at_rest``, with the provision flag cleared (untimed) first, so that it arms the
flag and sends the dispatch message: a create when the workers are idle, which costs
what a create cost before 2026-12-05 (one Celery message) plus the script's round trip.
``sql_statements_median``: SQL statements per create and per trivial request (10 more
of each, what runs on commit included). ``--parts`` adds where a create's CPU goes,
measured directly (cProfile overstates Python-heavy parts several times over): over 200
more creates, the CPU time of this process inside each of a list of steps (``PARTS``,
inclusive: a step's time includes the steps inside it), per create.
``--publish-paths`` adds the CPU per create with the live publish pipelined and through
the channel layer's ``group_send``, in alternating blocks of 50 over 400 more creates
(``publish_paths``). ``--profile`` adds
the top functions (cumulative and own CPU) of cProfile over 50 more creates, and saves
the whole profile to ``var/accept_cpu.prof``.

Until 2026-12-04 the requests went through Django's test ``AsyncClient`` without a
pool: a handler the portal does not serve with, and a new PostgreSQL connection per
request. Figures before that date in bench/README.md are from that.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/accept_cpu.py \
        [--creates 200] [--warmup 20] [--parts] [--publish-paths] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import cProfile
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import bench_database, django_env, profile_tables, queues_purge  # noqa: E402
from tests.asgi_request import asgi_request  # noqa: E402

TRIVIAL = "/bench/trivial/"
CREATE = "/api/v1/tenants/bench/virtualmachines/"


def setup(database_url: str, **extra: str) -> None:
    """Production settings with the trivial view's URLs (``extra`` overrides), migrated."""
    settings = {
        "DJANGO_SETTINGS_MODULE": "bench.trivial_settings",
        "ISOTOPE_DEBUG": "0",
        "ISOTOPE_HTTPS": "0",
        "SECRET_KEY": "bench-accept-cpu-" + "k" * 40,
        "ALLOWED_HOSTS": "testserver,localhost",
        "ISOTOPE_LOG_LEVEL": "WARNING",
        "ISOTOPE_DB_POOL_SIZE": "4",
    }
    env = django_env(database_url, **{**settings, **extra})
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def body(name: str) -> str:
    return json.dumps(
        {"metadata": {"name": name}, "spec": {"image": "tiny", "vcpus": 1, "memoryMiB": 64}}
    )


def stats(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


async def measure(app, key: str, path: str, name: str):
    headers = [(b"authorization", f"Token {key}".encode()), (b"content-type", b"application/json")]
    call = asgi_request(app, "POST", path, body(name).encode(), headers)
    wall = time.perf_counter()
    cpu = time.process_time()
    # In an empty context, as uvicorn starts each request: nothing Django keeps per
    # context (its cache backends, its connections) is inherited from an earlier one.
    status, _, content = await asyncio.create_task(call, context=contextvars.Context())
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    if status not in (201, 202):
        raise RuntimeError(f"{path} answered {status}: {content[:300]}")
    return cpu, wall


def served_app():
    """The HTTP application as a served process holds it: built by ``portal.asgi_http``,
    then what is loaded out of the collector's scans, as ``portal.asgi`` does at start-up
    (its ``_freeze_loaded``). Without that, every full collection here walked Django's,
    whitenoise's (one entry per collected static file) and every view's objects, which a
    served process does not: 1–2 ms of CPU per create and 0.3–0.5 ms per trivial request
    more than production (bench/README.md, 2026-12-05)."""
    from portal.asgi import _freeze_loaded
    from portal.asgi_http import get_asgi_application

    app = get_asgi_application()
    _freeze_loaded()
    return app


# (kind, path, the provision flag cleared first): a create while a provision dispatch is
# on its way (under load: no Celery message of its own) and one that arms the flag and
# sends the dispatch (at rest), interleaved with the trivial request.
KINDS = (("trivial", TRIVIAL, False), ("create", CREATE, False), ("create_at_rest", CREATE, True))


async def run(key: str, creates: int, warmup: int) -> dict:
    from compute.services.dispatch import provision_requests_clear

    app = served_app()
    for i in range(warmup):
        await measure(app, key, TRIVIAL, f"warm-t{i}")
        await measure(app, key, CREATE, f"warm-{i}")
    cpu: dict[str, list[float]] = {kind: [] for kind, _, _ in KINDS}
    wall: dict[str, list[float]] = {kind: [] for kind, _, _ in KINDS}
    for i in range(creates):
        for kind, path, at_rest in KINDS:
            if at_rest:
                provision_requests_clear()  # not timed: no dispatch on its way
            used, took = await measure(app, key, path, f"{kind.replace('_', '-')}-{i}")
            cpu[kind].append(used)
            wall[kind].append(took)
    result = {kind: {"cpu": stats(cpu[kind]), "wall": stats(wall[kind])} for kind in cpu}
    trivial = result["trivial"]["cpu"]["median_ms"]
    for kind, suffix in (("create", ""), ("create_at_rest", "_at_rest")):
        median = result[kind]["cpu"]["median_ms"]
        result[f"create_minus_trivial_cpu_median_ms{suffix}"] = round(median - trivial, 3)
        result[f"create_vs_trivial_cpu_median{suffix}"] = round(median / trivial, 2)
    return result


# (module, owner attribute path, step): what ``--parts`` times, in the order reported.
PARTS = [
    ("django.core.handlers.base", "BaseHandler.get_response", "the whole chain (get_response)"),
    ("portal.api.authentication", "TokenAuthentication.authenticate", "token authentication"),
    ("compute.api", "TenantResourceView.allowed_tenant", "tenant and role"),
    ("rest_framework.serializers", "BaseSerializer.is_valid", "body validation"),
    ("compute.api", "vm_create_from_api", "the service, its commit and on-commit work"),
    ("compute.services.vms", "_validate_create", "· name, image and size checks"),
    ("tenants.services", "QuotaCharge.check", "· quota check (unlocked)"),
    ("compute.services.vms", "_create_rows", "· rows, placement and locks"),
    ("compute.services.vms", "schedule", "·· placement"),
    ("portal.sql", "insert_later", "·· rows queued (values prepared)"),
    ("portal.sql", "_Batch.flush", "·· the rows' one statement"),
    ("compute.services.vms", "event_publish", "·· event"),
    ("compute.services.vms", "confirm", "·· host lock and counters"),
    ("tenants.services", "QuotaCharge.charge", "·· quota charge"),
    ("tenants.services", "_counters_add_if_fits", "··· counters' compare-and-set"),
    ("usage.services.alerts", "quota_alerts_check", "··· quota alert levels"),
    ("django.db.backends.base.base", "BaseDatabaseWrapper.commit", "· COMMIT"),
    (
        "django.db.backends.base.base",
        "BaseDatabaseWrapper.run_and_clear_commit_hooks",
        "· on-commit hooks",
    ),
    ("monitoring.services", "_LiveBatch.__call__", "·· live push (event and state)"),
    ("compute.services.dispatch", "provision_request", "·· provision request"),
    ("compute.api", "TenantResourceView.respond", "response body"),
]


async def parts(key: str, creates: int, n: int = 200) -> dict:
    """CPU per create inside each step of ``PARTS`` (inclusive), over ``n`` creates."""
    import importlib

    totals = {label: 0.0 for _, _, label in PARTS}
    calls = dict.fromkeys(totals, 0)
    patched = []
    for module_name, path, label in PARTS:
        owner = importlib.import_module(module_name)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        original = owner.__dict__[name]

        def timed(*args, _original=original, _label=label, **kwargs):
            started = time.process_time()
            try:
                return _original(*args, **kwargs)
            finally:
                totals[_label] += time.process_time() - started
                calls[_label] += 1

        setattr(owner, name, timed)
        patched.append((owner, name, original))
    try:
        app = served_app()
        whole = []
        for i in range(n):
            used, _ = await measure(app, key, CREATE, f"part-{creates + i}")
            whole.append(used)
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
    return {
        "creates": n,
        "request_cpu_median_ms": round(statistics.median(whole) * 1000, 3),
        "request_cpu_mean_ms": round(statistics.fmean(whole) * 1000, 3),
        "cpu_ms_per_create": {label: round(totals[label] / n * 1000, 3) for label in totals},
        "calls_per_create": {label: round(calls[label] / n, 2) for label in calls},
    }


async def publish_paths(key: str, first: int, n: int = 400, block: int = 50) -> dict:
    """CPU per create with ``live.broadcast_many``'s two ways of sending: one pipeline of
    ``PUBLISH``es (the default on the pub/sub layer with one Redis server) and the
    layer's ``group_send`` through the publisher loop (what a sharded layer does; what
    every layer did before 2026-12-05). ``n`` creates in alternating blocks of ``block``
    in this process, so both see the same moment of a noisy machine."""
    from monitoring import live

    pipelined = live._pubsub_client
    samples: dict[str, list[float]] = {"pipelined": [], "group_send": []}
    app = served_app()
    try:
        for number in range(n):
            path = "pipelined" if (number // block) % 2 == 0 else "group_send"
            live._pubsub_client = pipelined if path == "pipelined" else (lambda layer: None)
            used, _ = await measure(app, key, CREATE, f"path-{first + number}")
            samples[path].append(used)
    finally:
        live._pubsub_client = pipelined
    result = {path: stats(values) for path, values in samples.items()}
    result["block"] = block
    result["group_send_minus_pipelined_median_ms"] = round(
        result["group_send"]["median_ms"] - result["pipelined"]["median_ms"], 3
    )
    return result


def profile_creates(key: str, creates: int, n: int = 50) -> dict:
    """cProfile over ``n`` more creates through the WSGI handler (the view runs in the
    calling thread there; under ASGI it runs in an executor thread cProfile misses)."""
    from django.test import Client

    client = Client(headers={"Authorization": f"Token {key}"})
    profile = cProfile.Profile(time.process_time)
    for i in range(n):
        profile.enable()
        response = client.post(CREATE, body(f"prof-{creates + i}"), content_type="application/json")
        profile.disable()
        assert response.status_code in (201, 202), response.content[:300]
    return {"creates": n, **profile_tables(profile, "accept_cpu")}


def count_statements(key: str, creates: int, n: int = 10) -> dict:
    """SQL statements per request (median of ``n``), what runs on commit included: the
    same create and trivial request through the WSGI handler, every statement on the
    connection counted (``CaptureQueriesContext``)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(headers={"Authorization": f"Token {key}"})
    counts: dict[str, list[int]] = {"trivial": [], "create": []}
    for i in range(n):
        for kind, path in (("trivial", TRIVIAL), ("create", CREATE)):
            with CaptureQueriesContext(connection) as queries:
                response = client.post(
                    path, body(f"count-{creates + i}"), content_type="application/json"
                )
            assert response.status_code in (201, 202), response.content[:300]
            counts[kind].append(len(queries.captured_queries))
    return {kind: statistics.median(values) for kind, values in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creates", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--parts", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--publish-paths", action="store_true")
    args = parser.parse_args()

    setup(bench_database("isotope_bench_accept_cpu"))
    from bench.vm_create import seed

    extra = (50 if args.profile else 0) + (200 if args.parts else 0)
    extra += 400 if args.publish_paths else 0
    key = seed(2 * args.creates + args.warmup + extra + 10)
    result = asyncio.run(run(key, args.creates, args.warmup))
    result["sql_statements_median"] = count_statements(key, args.creates + 50)
    if args.parts:
        result["parts"] = asyncio.run(parts(key, args.creates + 60))
    if args.publish_paths:
        result["publish_paths"] = asyncio.run(publish_paths(key, args.creates + 260))
    if args.profile:
        result["profile"] = profile_creates(key, args.creates)

    queues_purge("libvirt", "default")
    print(
        json.dumps(
            {
                "benchmark": "accept_cpu",
                "creates": args.creates,
                "cores": os.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "channel_layer": os.environ.get("ISOTOPE_CHANNEL_LAYER", "pubsub"),
                "handler": "portal.asgi_http",
                **result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
