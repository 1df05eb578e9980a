"""VM placement, after kube-scheduler: filter hosts by predicates, then score them.

Filters: enabled, not in maintenance, reachable, labels match the VM's node selector,
fits after overcommit (vCPUs and memory already placed + requested ≤ capacity × ratio),
a console port left in the host's range (one per VM placed there).
Scores: least requested (free fraction after placement, averaged over CPU and memory)
plus balanced allocation (1 − |cpu fraction − memory fraction|). The best total wins;
ties go to the host name for stable results.

:func:`schedule` places a new VM; :func:`check_host` runs the same filter for one host
(growing a stopped VM where it is) and refuses with the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q, Sum

from compute.choices import SLOT_MIGRATION_PHASES
from compute.models import Host, Migration, VirtualMachine
from portal.exceptions import Conflict


class NoHostAvailable(Conflict):
    title = "No host available"
    slug = "no-host-available"


@dataclass(frozen=True)
class Placement:
    host: Host
    score: float


def host_usage(hosts) -> dict[int, tuple[int, int, int]]:
    """vCPUs, MiB and VMs placed on each host by VMs that still exist (and by VMs
    migrating to it)."""
    rows = (
        VirtualMachine.objects.filter(host__in=hosts)
        .values("host_id")
        .annotate(cpu=Sum("vcpus"), mem=Sum("memory_mib"), n=Count("id"))
    )
    usage = {r["host_id"]: (r["cpu"] or 0, r["mem"] or 0, r["n"]) for r in rows}
    # A VM being live-migrated counts on its target too until it has arrived.
    inbound = (
        Migration.objects.filter(target__in=hosts, phase__in=SLOT_MIGRATION_PHASES)
        .values("target_id")
        .annotate(cpu=Sum("vm__vcpus"), mem=Sum("vm__memory_mib"), n=Count("id"))
    )
    for r in inbound:
        cpu, mem, n = usage.get(r["target_id"], (0, 0, 0))
        usage[r["target_id"]] = (cpu + (r["cpu"] or 0), mem + (r["mem"] or 0), n + r["n"])
    return usage


def schedule(
    *,
    vcpus: int,
    memory_mib: int,
    node_selector: dict | None = None,
    exclude: tuple[int, ...] = (),
    lock: bool = True,
) -> Placement:
    """Choose a host or raise ``NoHostAvailable`` saying why each host was filtered.

    With ``lock`` the candidate host rows are locked until the caller's transaction
    ends, so concurrent placements see each other's VMs and never overcommit.
    """
    hosts = Host.objects.exclude(pk__in=exclude).order_by("pk")
    if lock:
        hosts = hosts.select_for_update()
    hosts = list(hosts)
    if not hosts:
        raise NoHostAvailable("No hosts are registered. Ask a platform admin to add one.")
    usage = host_usage(hosts)
    reasons: dict[str, int] = {}
    candidates: list[Placement] = []
    selector = node_selector or {}
    for host in hosts:
        reason = _filter(host, selector, vcpus, memory_mib, usage.get(host.pk, (0, 0, 0)))
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
            continue
        candidates.append(Placement(host, _score(host, vcpus, memory_mib, usage)))
    if not candidates:
        raise NoHostAvailable(_refusal(reasons, len(hosts)))
    return max(candidates, key=lambda p: (p.score, [-ord(c) for c in p.host.name]))


# Which request field a capacity refusal is about (for field errors).
_REASON_FIELD = {
    "with too few free vCPUs": "vcpus",
    "with too little free memory": "memory_mib",
}


def check_host(
    *,
    host: Host,
    vcpus: int,
    memory_mib: int,
    node_selector: dict | None = None,
    resident: VirtualMachine | None = None,
) -> None:
    """Raise ``NoHostAvailable`` unless ``host`` passes the filter for a VM of this size,
    with the reason :func:`schedule` would give.

    ``resident`` is a VM placed on ``host`` already whose current size is not counted
    (it is the one being resized). Locks the host row until the caller's transaction
    ends, like ``schedule``, so concurrent placements and resizes see each other.
    """
    host = Host.objects.select_for_update().get(pk=host.pk)
    used_cpu, used_mem, placed = host_usage([host]).get(host.pk, (0, 0, 0))
    if resident is not None and resident.host_id == host.pk:
        # The resident keeps its size's share out of the sum and its console port.
        used_cpu, used_mem = used_cpu - resident.vcpus, used_mem - resident.memory_mib
        placed -= 1
    reason = _filter(host, node_selector or {}, vcpus, memory_mib, (used_cpu, used_mem, placed))
    if reason:
        message = _refusal({reason: 1}, 1)
        raise NoHostAvailable(message, errors={_REASON_FIELD.get(reason, "host"): [message]})


def _refusal(reasons: dict[str, int], hosts: int) -> str:
    detail = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
    return f"0/{hosts} hosts can take this VM: {detail}."


def _filter(host: Host, selector: dict, vcpus: int, memory: int, used: tuple[int, int, int]) -> str:
    if not host.enabled:
        return "disabled"
    if host.maintenance:
        return "in maintenance"
    if not host.reachable:
        return "unreachable"
    if any(str(host.labels.get(k)) != str(v) for k, v in selector.items()):
        return "not matching the node selector"
    if used[0] + vcpus > host.vcpu_capacity:
        return "with too few free vCPUs"
    if used[1] + memory > host.memory_capacity:
        return "with too little free memory"
    if host.can("console") and used[2] >= host.vnc_port_max - host.vnc_port_min + 1:
        return "with no free console port"
    return ""


def _score(host: Host, vcpus: int, memory: int, usage: dict) -> float:
    used_cpu, used_mem, _ = usage.get(host.pk, (0, 0, 0))
    cpu_capacity = host.vcpu_capacity or Decimal(1)
    mem_capacity = host.memory_capacity or Decimal(1)
    cpu_fraction = float((used_cpu + vcpus) / cpu_capacity)
    mem_fraction = float((used_mem + memory) / mem_capacity)
    least_requested = ((1 - cpu_fraction) + (1 - mem_fraction)) / 2
    balanced = 1 - abs(cpu_fraction - mem_fraction)
    return round(least_requested + balanced, 6)


def schedule_volume(*, size_gib: int) -> Host:
    """The host for a new local volume that no VM asked for: among the hosts that may
    take new work and have volume storage, the one with the fewest GiB provisioned in
    volumes (thin volumes: the pool's capacity bounds a single volume only)."""
    from compute.models import Volume

    hosts = [h for h in Host.objects.filter(hosts_filter_q()).order_by("name") if h.can("volumes")]
    if not hosts:
        raise NoHostAvailable(
            "No host with volume storage can take a volume now. Ask a platform admin."
        )
    fitting = [h for h in hosts if not h.storage_gib or size_gib <= h.storage_gib]
    if not fitting:
        largest = max(h.storage_gib for h in hosts)
        raise NoHostAvailable(f"No host's storage holds {size_gib} GiB (at most {largest} GiB).")
    provisioned = dict(
        Volume.objects.filter(host__in=fitting)
        .values("host_id")
        .annotate(gib=Sum("size_gib"))
        .values_list("host_id", "gib")
    )
    return min(fitting, key=lambda h: (provisioned.get(h.pk) or 0, h.name))


def hosts_filter_q() -> Q:
    """Hosts that may take new VMs at all (for the UI's capacity summary)."""
    return Q(enabled=True, maintenance=False, reachable=True)
