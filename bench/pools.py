"""VM pool scale-up and autoscaler reaction, on libvirt's test driver or real QEMU guests.

Scale-up cold (provision every member) vs warm (start members defined ahead) vs
warm-paused (resume members booted and suspended ahead), against raw libvirt doing the
same in the same run; and the autoscaler's reaction time.

Through the real stack (PostgreSQL + Redis + a Celery worker running the pool
controller and the VM tasks, as the portal does, with production settings: ``DEBUG``
off as ``deploy/`` runs it, since 2026-12-05): for each N, a pool at 0 replicas is
scaled to N and timed until the pool records N members Running and Ready (``cold``);
then the same with a pool keeping N warm members beforehand, defined and stopped
(``warm``: the scale-up starts them) or booted and paused (``warm-paused``: the
scale-up resumes them). Baselines in the same run, in this process on
``test:///default``: N ``defineXML()`` + ``create()`` (what cold provisioning does at
least), N ``create()`` of domains defined beforehand (a warm start) and N ``resume()``
of suspended domains (a paused warm start).

Reaction time (``--reaction-repeat``, 0 to skip): a pool of 1 Ready member with an
autoscaler (CPU, target 50 %, min 1, max 4); this process enqueues the autoscaler sweep
every ``--tick`` seconds (what beat does every ``ISOTOPE_AUTOSCALER_SECONDS``, 15 s by
default) and, at t0, starts writing the member's collector samples at 90 % CPU every
0.25 s (the test driver's guests do no work, so the load is simulated at the metric).
Timed from t0 (the metric over target) until the first new member is Running, for a
cold pool and one keeping a paused warm member.

``--driver qemu``: the same on real tiny TCG guests on libvirt node1
(``qemu:///system``), the portal's own readiness (the image's ready banner on the
serial console) marking a member Ready. The tenant's VM quota is set to exactly what a
run needs, so the controller's refill of warm members after a scale-up (N more guests
booting at once on this 2-core machine) does not compete with the scale-up measured.
Baselines on node1 in the same run, domains defined with the portal's own domain XML
(``LibvirtBackend.define``) and then only direct libvirt calls: N ``create()`` right
after definition (cold), N ``create()`` of domains defined beforehand (warm), each timed
until the calls return and until every guest printed the ready banner, and N
``resume()`` of those guests once booted and suspended. Reaction on real load: the
collector (``metrics_collect_all``) runs every ``--metrics-seconds`` s and the sweep
every ``--tick`` s through the worker; once the member is idle an autoscaler (CPU,
min 1, max 2, target ``--target`` %) is attached; t0 is the last key (Enter) of the
qemu-tier autoscaler test's busy loop (``tests/compute/guest.LOAD_CPU``) typed on the
member's console; timed until the guest's own confirmation on its serial port, the
autoscaler's new size, the first new member Running (``runs_s``) and Ready. Every
domain this creates is removed at the end, also on failure; no other domain on node1
is touched.

    DATABASE_URL=postgres://... REDIS_URL=redis://... .venv/bin/python bench/pools.py \
        [--driver test|qemu] [--sizes 1,5,10] [--repeat 3] [--tick 1] [--reaction-repeat 3]
        [--metrics-seconds 2] [--target 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import PRODUCTION, bench_database, django_env, spawn, stop  # noqa: E402

NODE1 = "qemu:///system"
# Per driver: default sizes, runs per size and mode, reaction runs; a member's memory.
DEFAULTS = {
    "test": {"sizes": "1,5,10", "repeat": 3, "reaction_repeat": 3},
    "qemu": {"sizes": "1,2,4", "repeat": 2, "reaction_repeat": 2},
}
MEMORY_MIB = {"test": 128, "qemu": 256}


def raw_libvirt(n: int, prefix: str) -> dict:
    """Seconds for N define+start, and for N start of domains defined beforehand."""
    import libvirt

    conn = libvirt.open("test:///default")

    def xml(name: str) -> str:
        return (
            f"<domain type='test'><name>{name}</name><memory unit='MiB'>256</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>"
        )

    start = time.perf_counter()
    for i in range(n):
        conn.defineXML(xml(f"{prefix}-cold-{i}")).create()
    cold = time.perf_counter() - start
    defined = [conn.defineXML(xml(f"{prefix}-warm-{i}")) for i in range(n)]
    start = time.perf_counter()
    for domain in defined:
        domain.create()
    warm = time.perf_counter() - start
    for domain in defined:
        domain.suspend()
    start = time.perf_counter()
    for domain in defined:
        domain.resume()
    resumed = time.perf_counter() - start
    conn.close()
    return {
        "define_start_s": round(cold, 4),
        "start_defined_s": round(warm, 4),
        "resume_paused_s": round(resumed, 4),
    }


class RawGuests:
    """Tiny guests this benchmark defines on node1 with the portal's own domain XML
    (``LibvirtBackend.define``), then drives with direct libvirt calls. :meth:`remove`
    deletes every one of them (and nothing else)."""

    def __init__(self, backend, image):
        self.backend = backend
        self.image = image
        self.names: list[str] = []

    def define(self, name: str):
        """Define ``name``; its libvirt domain."""
        from compute.backends.base import DomainSpec

        self.names.append(name)
        self.backend.define(
            DomainSpec(
                name=name,
                vcpus=1,
                memory_mib=MEMORY_MIB["qemu"],
                tenant="bench",
                vm_name=name.removeprefix("isotope-"),
                vm_uid=str(uuid.uuid4()),
                kernel=self.image.kernel_path,
                initrd=self.image.initrd_path,
                cmdline=self.image.cmdline,
            )
        )
        return self.backend.conn.lookupByName(name)

    def domain_xml(self, name: str) -> str:
        """The XML the portal would define for ``name`` (defined, read, undefined)."""
        import libvirt

        domain = self.define(name)
        text = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        domain.undefine()
        return text

    def ready(self, name: str) -> bool:
        """The image's ready banner is on the guest's serial console."""
        try:
            log = Path(self.backend.serial_log(name)).read_text(errors="replace")
        except OSError:
            return False
        return self.image.ready_banner in log

    def remove(self) -> None:
        for name in self.names:
            try:
                self.backend.delete(name)
            except Exception as error:  # noqa: BLE001 - the others still go
                print(f"could not delete {name}: {error}", file=sys.stderr)
        self.names.clear()


def raw_qemu(raw: RawGuests, n: int, prefix: str) -> dict:
    """On node1: N define+create (XML made beforehand), N create of domains defined
    beforehand, each until the calls return and until every guest printed its ready
    banner; then N resume of those guests booted and suspended."""

    def all_ready(names: list[str]) -> bool:
        return all(raw.ready(name) for name in names)

    try:
        cold = [f"{prefix}-cold-{i}" for i in range(n)]
        xmls = [raw.domain_xml(name) for name in cold]
        conn = raw.backend.conn
        start = time.monotonic()
        for text in xmls:
            conn.defineXML(text).create()
        cold_started = time.monotonic() - start
        cold_ready = wait(lambda: all_ready(cold), 300, f"{prefix}: cold banners") - start
        raw.remove()
        warm = [f"{prefix}-warm-{i}" for i in range(n)]
        domains = [raw.define(name) for name in warm]
        start = time.monotonic()
        for domain in domains:
            domain.create()
        warm_started = time.monotonic() - start
        warm_ready = wait(lambda: all_ready(warm), 300, f"{prefix}: warm banners") - start
        for domain in domains:
            domain.suspend()
        start = time.monotonic()
        for domain in domains:
            domain.resume()
        resumed = time.monotonic() - start
    finally:
        raw.remove()
    return {
        "define_start_s": round(cold_started, 4),
        "define_start_ready_s": round(cold_ready, 4),
        "start_defined_s": round(warm_started, 4),
        "start_defined_ready_s": round(warm_ready, 4),
        "resume_paused_s": round(resumed, 4),
    }


def setup_django(database_url: str, **extra: str) -> None:
    os.environ.update(django_env(database_url, **extra))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed():
    from compute.choices import ImageKind
    from compute.models import Host, Image
    from compute.services.hosts import host_check
    from tenants import services

    tenant = services.tenant_create(
        actor=None, slug="bench", quota={"vms": 1000, "cpu": 1000, "memory": 10**8}
    )
    host = Host.objects.create(name="test", uri="test:///default", cpu_ratio=100)
    host_check(host)
    Host.objects.filter(pk=host.pk).update(memory_mib=10**9, cpus=10**4)
    Image.objects.create(
        name="tiny", kind=ImageKind.KERNEL, kernel_path="/k", initrd_path="/i", min_memory_mib=64
    )
    return tenant


def seed_qemu():
    """The tenant ``bench`` (its VM quota set per run), node1 and the tiny image."""
    from compute.choices import ImageKind
    from compute.models import Host, Image
    from compute.services.hosts import host_check
    from tenants import services
    from tools.infra import read_state

    state, image = read_state("libvirt"), read_state("image")
    if not state.get("ok") or not image.get("ok"):
        raise SystemExit(
            f"needs libvirt node1 and the tiny image: {state.get('reason')}; {image.get('reason')}"
        )
    tenant = services.tenant_create(
        actor=None, slug="bench", quota={"vms": 1, "cpu": 100, "memory": 10**6}
    )
    host = host_check(Host.objects.create(name="node1", uri=NODE1, cpu_ratio=8))
    if not host.reachable:
        raise SystemExit(f"{NODE1}: {host.message}")
    Image.objects.create(
        name="tiny",
        kind=ImageKind.KERNEL,
        kernel_path=image["kernel"],
        initrd_path=image["initrd"],
        min_memory_mib=128,
        ready_banner=image["banner"],
    )
    return tenant


def quota_vms(tenant, vms: int | None) -> None:
    """Limit the tenant to ``vms`` VMs (None: leave the quota as it is)."""
    from tenants import services

    if vms is not None:
        services.quota_set(actor=None, tenant=tenant, limits={"vms": vms})


def wait(check, timeout: float, what: str) -> float:
    """Poll ``check`` until true; the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


MODES = {"cold": None, "warm": "stopped", "warm-paused": "paused"}


def one_scale_up(tenant, name: str, n: int, warm_mode: str | None, driver: str = "test") -> float:
    """Seconds from the scale call until N members are Running and Ready (warm_mode
    None: no warm members). On QEMU the tenant may hold N VMs: no refill after it."""
    from compute.models import VirtualMachine, VMPool
    from compute.services import pools as pool_services

    warm = warm_mode is not None
    quota_vms(tenant, n if driver == "qemu" else None)
    pool = pool_services.pool_create(
        actor=None,
        tenant=tenant,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=MEMORY_MIB[driver],
        replicas=0,
        warm=n if warm else 0,
        warm_mode=warm_mode or "stopped",
    )

    def now() -> VMPool:
        return VMPool.objects.get(pk=pool.pk)

    if warm:
        wait(lambda: now().warm_replicas == n, 300, f"{n} warm members of {name}")
    start = time.monotonic()
    pool_services.pool_scale(actor=None, pool=now(), replicas=n)
    done = wait(lambda: now().ready_replicas == n, 300, f"{n} ready members of {name}")
    if warm:
        started = VirtualMachine.objects.filter(
            pool=pool, name__in=[f"{name}-{i}" for i in range(n)]
        )
        assert started.filter(pool_warm=False).count() == n, "warm members were not used"
    pool_services.pool_delete(actor=None, pool=now())
    wait(lambda: not VMPool.objects.filter(pk=pool.pk).exists(), 300, f"{name} deleted")
    return done - start


def reaction_pool(tenant, name: str, warm_mode: str | None, driver: str):
    """A pool of 1 Ready member (and 1 warm one in ``warm_mode``, if any); returns
    the pool's reader and that member."""
    from compute.models import VirtualMachine, VMPool
    from compute.services import pools as pool_services

    pool = pool_services.pool_create(
        actor=None,
        tenant=tenant,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=MEMORY_MIB[driver],
        replicas=1,
        warm=1 if warm_mode else 0,
        warm_mode=warm_mode or "stopped",
    )

    def now() -> VMPool:
        return VMPool.objects.get(pk=pool.pk)

    wait(
        lambda: now().ready_replicas == 1 and now().warm_replicas == (1 if warm_mode else 0),
        300,
        f"{name} ready",
    )
    return now, VirtualMachine.objects.select_related("host").get(pool=pool, pool_warm=False)


def one_reaction(tenant, name: str, warm_mode: str | None, tick: float) -> float:
    """Seconds from the member's metric going over target until the autoscaler's first
    new member is Running."""
    from django.utils import timezone

    from compute.choices import Phase
    from compute.models import VirtualMachine, VMPool
    from compute.services import autoscalers as autoscaler_services
    from compute.services import pools as pool_services
    from compute.tasks.pools import autoscalers_sweep
    from monitoring.models import VMSample

    now, first = reaction_pool(tenant, name, warm_mode, "test")
    pool = now()
    autoscaler_services.autoscaler_create(
        actor=None, tenant=tenant, pool=now(), min_replicas=1, max_replicas=4, target=50
    )
    others = VirtualMachine.objects.filter(pool=pool, pool_warm=False).exclude(pk=first.pk)
    start = time.monotonic()
    next_sample = next_tick = start
    while True:
        moment = time.monotonic()
        if moment >= next_sample:
            VMSample.objects.create(
                vm=first,
                time=timezone.now(),
                cpu_percent=90.0,
                memory_used_mib=64.0,
                disk_read_bps=0,
                disk_write_bps=0,
                net_rx_bps=0,
                net_tx_bps=0,
            )
            next_sample += 0.25
        if moment >= next_tick:
            autoscalers_sweep()  # what beat enqueues every ISOTOPE_AUTOSCALER_SECONDS
            next_tick += tick
        if others.filter(phase=Phase.RUNNING).exists():
            done = time.monotonic()
            break
        if moment - start > 300:
            raise RuntimeError(f"{name}: no new member Running after 300 s")
        time.sleep(0.02)
    pool_services.pool_delete(actor=None, pool=now())
    wait(lambda: not VMPool.objects.filter(pk=pool.pk).exists(), 300, f"{name} deleted")
    return done - start


class Ticker(threading.Thread):
    """Beat's autoscaling entries at the benchmark's pace: ``metrics_collect_all`` every
    ``metrics`` s and ``autoscalers_sweep`` every ``tick`` s, queued for the worker."""

    def __init__(self, metrics: float, tick: float):
        from compute.tasks.pools import autoscalers_sweep
        from monitoring.tasks import metrics_collect_all

        super().__init__(daemon=True)
        self.every = {metrics_collect_all: metrics, autoscalers_sweep: tick}
        self.halt = threading.Event()

    def run(self) -> None:
        due = dict.fromkeys(self.every, 0.0)
        while not self.halt.is_set():
            moment = time.monotonic()
            for task, every in self.every.items():
                if moment >= due[task]:
                    task.delay()
                    due[task] = moment + every
            self.halt.wait(0.05)


def one_reaction_qemu(tenant, name: str, warm_mode: str | None, args) -> dict:
    """A pool of 1 Ready tiny guest (and 1 paused warm one for warm_mode "paused") with
    an autoscaler (CPU, min 1, max 2): seconds from the guest's busy loop running until
    the autoscaler raised the replicas, the new member is Running, and it is Ready."""
    from compute.backends import backend_for_host
    from compute.choices import ConditionStatus, Phase
    from compute.models import VirtualMachine, VMPool
    from compute.services import autoscalers as autoscaler_services
    from compute.services import pools as pool_services
    from monitoring.models import VMSample
    from tests.compute.guest import LOAD_CPU, LOAD_CPU_MARK, Guest

    quota_vms(tenant, 2)
    now, first = reaction_pool(tenant, name, warm_mode, "qemu")
    pool = now()
    backend = backend_for_host(first.host)
    guest = Guest(
        lambda: backend.conn.lookupByName(first.domain_name),
        backend.serial_log(first.domain_name),
    )
    others = VirtualMachine.objects.filter(pool=pool, pool_warm=False).exclude(pk=first.pk)
    ticker = Ticker(args.metrics_seconds, args.tick)
    ticker.start()
    try:
        # A guest just booted is busy for a while (44 % seen): the autoscaler comes once
        # the member's last three samples are idle (below half the target).
        def idle() -> bool:
            recent = list(
                VMSample.objects.filter(vm=first)
                .order_by("-time")[:3]
                .values_list("cpu_percent", flat=True)
            )
            return len(recent) == 3 and max(recent) < args.target / 2

        wait(idle, 300, f"{name}: an idle member")
        autoscaler_services.autoscaler_create(
            actor=None,
            tenant=tenant,
            pool=now(),
            min_replicas=1,
            max_replicas=2,
            metric="cpu",
            target=args.target,
        )
        time.sleep(2 * args.tick + args.metrics_seconds)  # it runs on the idle member
        if now().replicas != 1:
            raise RuntimeError(f"{name}: scaled to {now().replicas} before any load")
        offset = len(guest.log())
        guest.type(LOAD_CPU + "\n")
        start = time.monotonic()  # the Enter key is in: the busy loop starts
        checks = {
            "busy": lambda: LOAD_CPU_MARK in guest.log()[offset:],
            "decided": lambda: now().replicas > 1,
            "running": lambda: others.filter(phase=Phase.RUNNING).exists(),
            "ready": lambda: others.filter(
                phase=Phase.RUNNING, ready=ConditionStatus.TRUE
            ).exists(),
        }
        marks: dict[str, float] = {}
        while len(marks) < len(checks):
            for key, check in checks.items():
                if key not in marks and check():
                    marks[key] = time.monotonic() - start
            if time.monotonic() - start > 300:
                raise RuntimeError(f"{name}: after 300 s of load only {sorted(marks)}")
            time.sleep(0.05)
    finally:
        ticker.halt.set()
        ticker.join()
    pool_services.pool_delete(actor=None, pool=now())
    wait(lambda: not VMPool.objects.filter(pk=pool.pk).exists(), 300, f"{name} deleted")
    return {f"{key}_s": round(seconds, 3) for key, seconds in marks.items()}


def remove_leftovers() -> None:
    """After a failure: delete the benchmark's pools through the portal, then remove
    the domains of whatever VMs of its database are still there (only those)."""
    from compute.backends import backend_for_host
    from compute.models import VirtualMachine, VMPool
    from compute.services import pools as pool_services

    for pool in VMPool.objects.filter(deleting=False):
        try:
            pool_services.pool_delete(actor=None, pool=pool)
        except Exception as error:  # noqa: BLE001 - the domains are removed below
            print(f"could not delete pool {pool.name}: {error}", file=sys.stderr)
    try:
        wait(lambda: not VirtualMachine.objects.exists(), 180, "the pools' VMs deleted")
    except RuntimeError as error:
        print(error, file=sys.stderr)
    for vm in VirtualMachine.objects.select_related("tenant", "host").exclude(host=None):
        try:
            backend_for_host(vm.host).delete(vm.domain_name)
        except Exception as error:  # noqa: BLE001 - the others still go
            print(f"could not delete {vm.domain_name}: {error}", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--driver",
        choices=sorted(DEFAULTS),
        default="test",
        help="test: libvirt's test driver; qemu: real tiny guests on node1",
    )
    parser.add_argument("--sizes", help="pool sizes, comma separated (test 1,5,10; qemu 1,2,4)")
    parser.add_argument("--repeat", type=int, help="runs per size and mode (test 3, qemu 2)")
    parser.add_argument(
        "--tick", type=float, default=1.0, help="autoscaler sweep interval (s) for reaction"
    )
    parser.add_argument(
        "--reaction-repeat", type=int, help="reaction runs per mode (0: skip; test 3, qemu 2)"
    )
    parser.add_argument(
        "--metrics-seconds",
        type=float,
        default=2.0,
        help="qemu: collector interval (s); the autoscaler averages 3 intervals",
    )
    parser.add_argument("--target", type=int, default=5, help="qemu: CPU target (%%)")
    args = parser.parse_args(argv)
    defaults = DEFAULTS[args.driver]
    try:
        args.sizes = [int(n) for n in (args.sizes or defaults["sizes"]).split(",")]
    except ValueError:
        parser.error("--sizes: whole numbers separated by commas, e.g. 1,2,4")
    if any(n < 1 for n in args.sizes):
        parser.error("--sizes: each size at least 1")
    if args.repeat is None:
        args.repeat = defaults["repeat"]
    if args.reaction_repeat is None:
        args.reaction_repeat = defaults["reaction_repeat"]
    if args.repeat < 1 or args.reaction_repeat < 0:
        parser.error("--repeat: at least 1; --reaction-repeat: 0 or more")
    if args.tick <= 0 or args.metrics_seconds <= 0 or not 1 <= args.target <= 100:
        parser.error("--tick and --metrics-seconds: above 0; --target: 1 to 100")
    return args


def main() -> None:
    args = parse_args()
    qemu = args.driver == "qemu"
    database_url = bench_database("isotope_bench_pools")
    # On QEMU the collector and the autoscaler run at the benchmark's pace (here and in
    # the worker): samples every --metrics-seconds, averaged over three of them.
    timing = (
        {
            "ISOTOPE_METRICS_SECONDS": f"{args.metrics_seconds:g}",
            "ISOTOPE_AUTOSCALER_METRIC_SECONDS": f"{3 * args.metrics_seconds:g}",
        }
        if qemu
        else {}
    )
    setup_django(database_url, **timing)
    tenant = seed_qemu() if qemu else seed()
    queues = "libvirt,default,monitoring" if qemu else "libvirt,default"
    worker = spawn(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", queues]
        + ["-P", "threads", "-c", "4", "-l", "warning"],
        django_env(database_url, ISOTOPE_LOG_LEVEL="WARNING", **timing, **PRODUCTION),
        "pools-worker.log",
    )
    raw_guests = None
    if qemu:
        from compute.backends import backend_for_host
        from compute.models import Host, Image

        raw_guests = RawGuests(
            backend_for_host(Host.objects.get(name="node1")), Image.objects.get(name="tiny")
        )
    results = []
    reaction: dict = {}
    try:
        time.sleep(2)  # the worker connects to Redis
        for n in args.sizes:
            row: dict = {"members": n}
            for mode, warm_mode in MODES.items():
                runs = [
                    one_scale_up(tenant, f"{mode}{n}r{i}", n, warm_mode, args.driver)
                    for i in range(args.repeat)
                ]
                row[f"{mode}_s"] = [round(t, 3) for t in runs]
                row[f"{mode}_median_s"] = round(statistics.median(runs), 3)
            if qemu:
                raws = [
                    raw_qemu(raw_guests, n, f"isotope-bench-pools-{os.getpid()}-{n}r{i}")
                    for i in range(args.repeat)
                ]
            else:
                raws = [raw_libvirt(n, f"raw{n}r{i}") for i in range(args.repeat)]
            for key in raws[0]:
                row[f"raw_{key.removesuffix('_s')}_median_s"] = round(
                    statistics.median(r[key] for r in raws), 4
                )
            row["cold_over_warm"] = round(row["cold_median_s"] / max(row["warm_median_s"], 1e-6), 2)
            row["cold_over_warm_paused"] = round(
                row["cold_median_s"] / max(row["warm-paused_median_s"], 1e-6), 2
            )
            results.append(row)
        for mode, warm_mode in (("cold", None), ("warm-paused", "paused")):
            if not args.reaction_repeat:
                break
            if qemu:
                runs = [
                    one_reaction_qemu(tenant, f"react-{mode}-{i}", warm_mode, args)
                    for i in range(args.reaction_repeat)
                ]
                reaction[mode] = {
                    key: [run[key] for run in runs] for key in runs[0] if key != "running_s"
                }
                reaction[mode]["runs_s"] = [run["running_s"] for run in runs]
                reaction[mode]["median_s"] = statistics.median(reaction[mode]["runs_s"])
                continue
            runs = [
                one_reaction(tenant, f"react-{mode}-{i}", warm_mode, args.tick)
                for i in range(args.reaction_repeat)
            ]
            reaction[mode] = {
                "runs_s": [round(t, 3) for t in runs],
                "median_s": round(statistics.median(runs), 3),
            }
    finally:
        try:
            if raw_guests is not None:
                raw_guests.remove()
            if qemu:
                remove_leftovers()
        finally:
            stop(worker)
    timing_note = (
        {"metrics_s": args.metrics_seconds, "target_percent": args.target, "max_replicas": 2}
        if qemu
        else {}
    )
    print(
        json.dumps(
            {
                "benchmark": "pools",
                "driver": NODE1 if qemu else "test:///default",
                "repeat": args.repeat,
                "cores": os.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "sizes": results,
                "reaction": {"tick_s": args.tick, **timing_note, **reaction},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
