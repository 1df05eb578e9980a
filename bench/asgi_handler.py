"""CPU per request of the HTTP handler, in one process: Django's ASGI handler, the portal's
(``portal.asgi_http``: the synchronous middleware chain entered once per request) and,
as the floor, Django's WSGI handler.

Three requests, each sent to the three handlers in turn (ABCABC…, so the machine's
noise falls on all of them alike): ``GET /healthz`` (one ``SELECT 1``), ``POST`` to the
trivial DRF view of ``bench/trivial_urls.py`` (middleware, token authentication,
permission check, no database write) and a VM create through the API (the service, its
commit and what runs on commit). Each request is charged the CPU time of this process
(every thread) it took, ``time.process_time()`` before and after; PostgreSQL's and
Redis's own CPU are not counted. The ASGI handlers get a request as uvicorn hands it
over (scope, body, then a ``receive`` that waits for the client) and in an empty context,
as uvicorn starts each request (since 2026-12-04 late: before, they inherited the cache
backend this thread had built); no socket, no HTTP parsing. Production settings
(``DEBUG`` off), ``ISOTOPE_DB_POOL_SIZE=4`` as ``deploy/`` sets it. No worker runs: the VMs
stay Pending.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/asgi_handler.py \
        [--requests 200] [--warmup 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import io
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import bench_database, queues_purge  # noqa: E402
from bench.accept_cpu import CREATE, TRIVIAL, setup, stats  # noqa: E402
from bench.accept_cpu import body as vm_body  # noqa: E402
from tests.asgi_request import asgi_request  # noqa: E402

HANDLERS = ("django_asgi", "portal_asgi", "django_wsgi")


def asgi_call(app, method: str, path: str, headers: list, body: bytes) -> tuple[int, bytes]:
    # In an empty context, as uvicorn starts each request: nothing Django keeps per
    # context (its cache backends, its connections) is inherited from this thread.
    call = asgi_request(app, method, path, body, headers)
    status, _, content = contextvars.Context().run(LOOP.run_until_complete, call)
    return status, content


def wsgi_call(app, method: str, path: str, headers: list, body: bytes) -> tuple[int, bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }
    for name, value in headers:
        key = name.decode().upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value.decode()
    status: list[str] = []
    result = app(environ, lambda line, _headers, _exc=None: status.append(line))
    content = b"".join(result)
    result.close()
    return int(status[0].split()[0]), content


LOOP = asyncio.new_event_loop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="of each kind, per handler")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    setup(
        bench_database("isotope_bench_asgi_handler"),
        SECRET_KEY="bench-asgi-handler-" + "k" * 40,
        ALLOWED_HOSTS="localhost,127.0.0.1",
        ISOTOPE_DB_POOL_SIZE="4",
    )
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    from bench.vm_create import seed
    from portal.asgi_http import SyncChainASGIHandler

    rounds = args.warmup + args.requests
    key = seed(rounds * len(HANDLERS) + 10)
    auth = [(b"authorization", f"Token {key}".encode()), (b"content-type", b"application/json")]
    apps = {
        "django_asgi": (asgi_call, ASGIHandler()),
        "portal_asgi": (asgi_call, SyncChainASGIHandler()),
        "django_wsgi": (wsgi_call, WSGIHandler()),
    }
    kinds = {
        "healthz": lambda i, h: ("GET", "/healthz", [], b"", 200),
        "trivial_drf_view": lambda i, h: ("POST", TRIVIAL, auth, vm_body(f"t-{i}").encode(), 202),
        "vm_create": lambda i, h: (
            "POST",
            CREATE,
            auth,
            vm_body(f"vm-{h.replace('_', '-')}-{i}").encode(),
            202,
        ),
    }
    cpu: dict = {kind: {handler: [] for handler in HANDLERS} for kind in kinds}
    for i in range(rounds):
        for kind, make in kinds.items():
            for handler in HANDLERS:
                call, app = apps[handler]
                method, path, headers, body, expected = make(i, handler)
                started = time.process_time()
                status, content = call(app, method, path, headers, body)
                used = time.process_time() - started
                if status != expected:
                    raise SystemExit(f"{handler} {method} {path}: {status} {content[:300]!r}")
                if i >= args.warmup:
                    cpu[kind][handler].append(used)

    result = {}
    for kind, per_handler in cpu.items():
        summary = {handler: stats(samples) for handler, samples in per_handler.items()}
        medians = {handler: summary[handler]["median_ms"] for handler in HANDLERS}
        result[kind] = {
            "cpu_median_ms": medians,
            "cpu_p90_ms": {handler: summary[handler]["p90_ms"] for handler in HANDLERS},
            "django_asgi_over_portal_asgi": round(
                medians["django_asgi"] / medians["portal_asgi"], 2
            ),
            "portal_asgi_over_wsgi": round(medians["portal_asgi"] / medians["django_wsgi"], 2),
        }

    queues_purge("libvirt", "default")
    print(
        json.dumps(
            {
                "benchmark": "asgi_handler",
                "requests": args.requests,
                "warmup": args.warmup,
                "cores": os.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "db_pool_size": 4,
                **result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
