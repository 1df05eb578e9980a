"""Image import throughput: Isotope vs ``curl`` + ``qemu-img convert``, same file, same run.

A raw disk image of ``--mib`` MiB (half random data, half zeros, like a real disk) is
served by a local HTTP server on 127.0.0.1. Each round:

- baseline: ``curl -o`` the file, then ``qemu-img convert -f raw -O qcow2``;
- baseline+: the same plus ``sha256sum`` and ``qemu-img info`` (the checks Isotope does);
- Isotope: ``image_import_url`` accepted in this process, the import run by a real
  Celery worker (queue ``storage``) in a subprocess (production settings: ``DEBUG`` off
  as ``deploy/`` runs it, since 2026-12-05): download with sha256 while
  streaming, ``qemu-img info``, convert, the database writes and live progress
  publishes; timed from accept to ``Ready`` (polling the row every 20 ms).

Prints JSON: seconds per round and MiB/s of each, and Isotope's median time relative
to each baseline.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/image_import.py \
        [--mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import PRODUCTION, ROOT, bench_database, django_env, spawn, stop  # noqa: E402

MIB = 1024 * 1024


def make_source(path: Path, mib: int) -> None:
    with path.open("wb") as out:
        for index in range(mib):
            out.write(os.urandom(MIB) if index % 2 == 0 else bytes(MIB))


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(_Quiet, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, httpd.server_address[1]


def timed(commands: list[list[str]]) -> float:
    start = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def summary(seconds: list[float], mib: int) -> dict:
    median = statistics.median(seconds)
    return {
        "seconds": [round(s, 3) for s in seconds],
        "median_s": round(median, 3),
        "mib_per_s": round(mib / median, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="isotope-bench-images-"))
    served = work / "served"
    served.mkdir()
    image_dir = work / "images"
    source = served / "disk.raw"
    make_source(source, args.mib)
    httpd, port = serve(served)
    url = f"http://127.0.0.1:{port}/disk.raw"

    database = bench_database("isotope_bench_images")
    extra = {
        "ISOTOPE_IMAGE_DIR": str(image_dir),
        "ISOTOPE_IMAGE_URL_ALLOW": "127.0.0.1/32",
        "ISOTOPE_DEFAULT_QUOTA_STORAGE": "100000",
    }
    os.environ.update(django_env(database, **extra))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from compute.models import Image
    from compute.services import images as image_services
    from portal.celery import app
    from tenants import services as tenant_services

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("storage")
    worker = spawn(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "storage"]
        + ["-P", "solo", "-c", "1", "-l", "warning", "--without-heartbeat", "--without-gossip"],
        django_env(database, **extra, **PRODUCTION),
        "image-import-worker.log",
    )
    tenant = tenant_services.tenant_create(actor=None, slug="bench", name="Bench")
    baseline, checked, isotope = [], [], []
    try:
        for round_ in range(args.rounds):
            out = work / f"curl-{round_}.raw"
            qcow = work / f"curl-{round_}.qcow2"
            convert = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(out), str(qcow)]
            baseline.append(timed([["curl", "-sSf", "-o", str(out), url], convert]))
            qcow.unlink()
            checked.append(
                timed(
                    [
                        ["curl", "-sSf", "-o", str(out), url],
                        ["sha256sum", str(out)],
                        ["qemu-img", "info", "--output=json", str(out)],
                        convert,
                    ]
                )
            )
            out.unlink()
            qcow.unlink()

            start = time.perf_counter()
            image = image_services.image_import_url(
                actor=None, tenant=tenant, name=f"bench-{round_}", url=url
            )
            deadline = time.monotonic() + 600
            while True:
                phase, message = Image.objects.filter(pk=image.pk).values_list("phase", "message")[
                    0
                ]
                if phase in ("Ready", "Failed") or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            if phase != "Ready":
                raise SystemExit(f"import ended {phase}: {message}")
            isotope.append(time.perf_counter() - start)
            image_services.image_delete(actor=None, image=Image.objects.get(pk=image.pk))
    finally:
        stop(worker)
        httpd.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "image_import",
        "file_mib": args.mib,
        "rounds": args.rounds,
        "baseline_curl_convert": summary(baseline, args.mib),
        "baseline_curl_sha256_info_convert": summary(checked, args.mib),
        "isotope_accept_to_ready": summary(isotope, args.mib),
    }
    median = result["isotope_accept_to_ready"]["median_s"]
    result["isotope_vs_curl_convert"] = round(
        median / result["baseline_curl_convert"]["median_s"], 2
    )
    result["isotope_vs_curl_sha256_info_convert"] = round(
        median / result["baseline_curl_sha256_info_convert"]["median_s"], 2
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
