"""Storage operations: Isotope's task pipeline vs the raw libvirt calls doing the same work,
same host, same run.

Each round, on one 1 GiB qcow2 volume:

- volume create: ``volume_create`` accepted → ``Ready`` vs ``pool.createXML``;
- snapshot create: ``snapshot_create`` → ``Ready`` vs ``pool.createXMLFrom`` (an
  Isotope snapshot is a full, standalone copy of its volume in the same pool);
- clone: ``volume_clone`` → ``Ready`` vs ``pool.createXMLFrom``;
- snapshot delete: ``snapshot_delete`` → the row gone vs ``vol.delete``. A snapshot is a
  standalone copy, so deleting it removes one file and merges nothing (no chain).

Isotope's side is timed from the service call (validation, quota reservation, rows,
events, the task sent after commit) to the phase the task records (the row polled every
10 ms), with a real Celery worker in this process (threads, as the tests run it) on a
private database. The raw side is the libvirt call alone, on the same connection and
pool. The default host is libvirt's test driver (in memory: it measures the pipeline,
not the disk); ``--uri qemu:///system`` uses a real host and pool (files on disk; the
bench's volumes are removed at the end).

Prints JSON: per operation the seconds of each round, the medians and Isotope's median
relative to the raw call's.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/storage.py \
        [--rounds 10] [--uri qemu:///system]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import ROOT, bench_database, django_env, queues_purge  # noqa: E402

OPERATIONS = ("volume_create", "snapshot_create", "clone", "snapshot_delete")

# A test-driver node with room for the bench (its pools hold no files).
TEST_NODE = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads>
    <active>8</active><mhz>2000</mhz><model>i686</model></cpu>
  <memory>16777216</memory>
</node>
"""

VOLUME_XML = (
    "<volume><name>{name}</name><capacity unit='GiB'>1</capacity>"
    "<target><format type='qcow2'/></target></volume>"
)


def wait_until(predicate, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def summary(isotope: list[float], raw: list[float]) -> dict:
    iso, base = statistics.median(isotope), statistics.median(raw)
    return {
        "isotope_ms": [round(s * 1000, 3) for s in isotope],
        "raw_libvirt_ms": [round(s * 1000, 3) for s in raw],
        "isotope_median_ms": round(iso * 1000, 3),
        "raw_libvirt_median_ms": round(base * 1000, 3),
        "isotope_vs_raw": round(iso / base, 1) if base else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--uri", default="", help="a libvirt URI (default: the test driver)")
    parser.add_argument(
        "--host",
        default="node1",
        help="the host's name: its volume pool is <ISOTOPE_STORAGE_ROOT>/<name>, where "
        "tools.infra made node1's",
    )
    args = parser.parse_args()

    uri = args.uri
    if not uri:
        node = Path(tempfile.mkdtemp(prefix="isotope-bench-storage-")) / "node.xml"
        node.write_text(TEST_NODE)
        uri = f"test://{node}"

    database = bench_database("isotope_bench_storage")
    os.environ.update(django_env(database))
    import django

    django.setup()
    from celery.contrib.testing.worker import start_worker
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from compute.backends import pool_name
    from compute.backends.libvirt.backend import shared_connection
    from compute.choices import SnapshotPhase, VolumePhase
    from compute.models import Host, Snapshot, Volume
    from compute.services import snapshots as snapshot_services
    from compute.services import volumes as volume_services
    from compute.services.hosts import host_check
    from portal.celery import app
    from tenants import services as tenant_services

    queues = ["default", "libvirt", "storage"]
    app.conf.task_always_eager = False
    queues_purge(*queues)
    host = host_check(Host.objects.create(name=args.host, uri=uri))
    if not host.reachable:
        raise SystemExit(f"{uri}: {host.message}")
    tenant = tenant_services.tenant_create(
        actor=None, slug="bench", quota={"storage": 100_000, "cpu": 1, "memory": 1024}
    )

    def phase_is(model, pk, phase):
        return lambda: model.objects.filter(pk=pk, phase=phase).exists()

    def gone(model, pk):
        return lambda: not model.objects.filter(pk=pk).exists()

    isotope = {op: [] for op in OPERATIONS}
    raw = {op: [] for op in OPERATIONS}
    made: list[str] = []
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, queues=queues):
        # The pool exists once the first volume is made through Isotope (warm-up, untimed).
        warm = volume_services.volume_create(actor=None, tenant=tenant, name="warm", size_gib=1)
        wait_until(phase_is(Volume, warm.pk, VolumePhase.READY), "the warm-up volume")
        pool = shared_connection(uri).storagePoolLookupByName(pool_name())
        for index in range(args.rounds):
            # --- Isotope ---------------------------------------------------------------
            clock = time.perf_counter()
            volume = volume_services.volume_create(
                actor=None, tenant=tenant, name=f"v{index}", size_gib=1
            )
            wait_until(phase_is(Volume, volume.pk, VolumePhase.READY), volume.name)
            isotope["volume_create"].append(time.perf_counter() - clock)
            volume = Volume.objects.select_related("tenant", "host").get(pk=volume.pk)

            clock = time.perf_counter()
            snapshot = snapshot_services.snapshot_create(
                actor=None, volume=volume, name=f"s{index}"
            )
            wait_until(phase_is(Snapshot, snapshot.pk, SnapshotPhase.READY), snapshot.name)
            isotope["snapshot_create"].append(time.perf_counter() - clock)

            clock = time.perf_counter()
            copy = snapshot_services.volume_clone(actor=None, volume=volume, name=f"c{index}")
            wait_until(phase_is(Volume, copy.pk, VolumePhase.READY), copy.name)
            isotope["clone"].append(time.perf_counter() - clock)

            snapshot = Snapshot.objects.select_related("volume__tenant").get(pk=snapshot.pk)
            clock = time.perf_counter()
            snapshot_services.snapshot_delete(actor=None, snapshot=snapshot)
            wait_until(gone(Snapshot, snapshot.pk), snapshot.name)
            isotope["snapshot_delete"].append(time.perf_counter() - clock)

            # --- Raw libvirt, same pool --------------------------------------------------
            names = [f"raw-v{index}.qcow2", f"raw-s{index}.qcow2", f"raw-c{index}.qcow2"]
            made += names
            clock = time.perf_counter()
            base = pool.createXML(VOLUME_XML.format(name=names[0]), 0)
            raw["volume_create"].append(time.perf_counter() - clock)
            clock = time.perf_counter()
            raw_snapshot = pool.createXMLFrom(VOLUME_XML.format(name=names[1]), base, 0)
            raw["snapshot_create"].append(time.perf_counter() - clock)
            clock = time.perf_counter()
            pool.createXMLFrom(VOLUME_XML.format(name=names[2]), base, 0)
            raw["clone"].append(time.perf_counter() - clock)
            clock = time.perf_counter()
            raw_snapshot.delete(0)
            raw["snapshot_delete"].append(time.perf_counter() - clock)

        # Clean up: Isotope's volumes through Isotope, the raw ones directly.
        for volume in Volume.objects.select_related("tenant", "host"):
            volume_services.volume_delete(actor=None, volume=volume)
        wait_until(lambda: not Volume.objects.exists(), "the volumes' deletion")
        pool.refresh(0)
        for name in made:
            try:
                pool.storageVolLookupByName(name).delete(0)
            except Exception:  # noqa: BLE001 - deleted above (the snapshot copies)
                pass

    result = {
        "benchmark": "storage",
        "uri": args.uri or "test:///<node file> (libvirt's test driver)",
        "rounds": args.rounds,
        "volume_gib": 1,
        **{op: summary(isotope[op], raw[op]) for op in OPERATIONS},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
