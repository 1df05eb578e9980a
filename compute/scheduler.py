"""VM placement, after kube-scheduler: filter hosts by predicates, then score them.

Filters: enabled, not in maintenance, reachable, labels match the VM's node selector,
fits after overcommit (vCPUs and memory already placed + requested ≤ capacity × ratio).
Scores: least requested (free fraction after placement, averaged over CPU and memory)
plus balanced allocation (1 − |cpu fraction − memory fraction|). The best total wins;
ties go to the host name for stable results.

:func:`schedule` places a new VM; :func:`check_host` runs the same filter for one host
(growing a stopped VM where it is) and refuses with the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
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


def host_usage(hosts) -> dict[int, tuple[int, int]]:
    """vCPUs and MiB placed on each host by VMs that still exist (and by VMs migrating
    to it)."""
    rows = (
        VirtualMachine.objects.filter(host__in=hosts)
        .values("host_id")
        .annotate(cpu=Sum("vcpus"), mem=Sum("memory_mib"), n=Count("id"))
    )
    usage = {r["host_id"]: (r["cpu"] or 0, r["mem"] or 0) for r in rows}
    # A VM being live-migrated counts on its target too until it has arrived.
    inbound = (
        Migration.objects.filter(target__in=hosts, phase__in=SLOT_MIGRATION_PHASES)
        .values("target_id")
        .annotate(cpu=Sum("vm__vcpus"), mem=Sum("vm__memory_mib"))
    )
    for r in inbound:
        cpu, mem = usage.get(r["target_id"], (0, 0))
        usage[r["target_id"]] = (cpu + (r["cpu"] or 0), mem + (r["mem"] or 0))
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

    Hosts are filtered and scored from an unlocked read. With ``lock`` only the chosen
    host's row is then locked (until the caller's transaction ends) and its usage read
    again under the lock: a placement that committed meanwhile is counted, so concurrent
    placements never overcommit a host. When the host no longer fits, its lock is given
    back (a savepoint) and the next best candidate is tried, so one placement holds at
    most one host lock at a time and placements on different hosts never wait for each
    other.
    """
    if lock and not transaction.get_connection().in_atomic_block:
        # The lock would end with the statement: nothing would stop an overcommit.
        raise transaction.TransactionManagementError("schedule(lock=True) needs a transaction.")
    hosts = list(Host.objects.exclude(pk__in=exclude).order_by("pk"))
    if not hosts:
        raise NoHostAvailable("No hosts are registered. Ask a platform admin to add one.")
    usage = host_usage(hosts)
    reasons: dict[str, int] = {}
    candidates: list[Placement] = []
    selector = node_selector or {}
    for host in hosts:
        reason = _filter(host, selector, vcpus, memory_mib, usage.get(host.pk, (0, 0)))
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
            continue
        candidates.append(Placement(host, _score(host, vcpus, memory_mib, usage)))
    candidates.sort(key=lambda p: (p.score, [-ord(c) for c in p.host.name]), reverse=True)
    if not lock:
        if not candidates:
            raise NoHostAvailable(_refusal(reasons, len(hosts)))
        return candidates[0]
    for candidate in candidates:
        try:
            with transaction.atomic():  # a savepoint: a host that no longer fits is unlocked
                host = Host.objects.select_for_update().get(pk=candidate.host.pk)
                used = host_usage([host]).get(host.pk, (0, 0))
                reason = _filter(host, selector, vcpus, memory_mib, used)
                if reason:
                    raise _Taken(reason)
                return Placement(host, _score(host, vcpus, memory_mib, {host.pk: used}))
        except _Taken as taken:
            reasons[taken.reason] = reasons.get(taken.reason, 0) + 1
    raise NoHostAvailable(_refusal(reasons, len(hosts)))


class _Taken(Exception):
    """The chosen host filled up between the unlocked read and its lock."""

    def __init__(self, reason: str):
        self.reason = reason


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
    used_cpu, used_mem = host_usage([host]).get(host.pk, (0, 0))
    if resident is not None and resident.host_id == host.pk:
        used_cpu, used_mem = used_cpu - resident.vcpus, used_mem - resident.memory_mib
    reason = _filter(host, node_selector or {}, vcpus, memory_mib, (used_cpu, used_mem))
    if reason:
        message = _refusal({reason: 1}, 1)
        raise NoHostAvailable(message, errors={_REASON_FIELD.get(reason, "host"): [message]})


def _refusal(reasons: dict[str, int], hosts: int) -> str:
    detail = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
    return f"0/{hosts} hosts can take this VM: {detail}."


def _filter(host: Host, selector: dict, vcpus: int, memory: int, used: tuple[int, int]) -> str:
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
    return ""


def _score(host: Host, vcpus: int, memory: int, usage: dict) -> float:
    used_cpu, used_mem = usage.get(host.pk, (0, 0))
    cpu_capacity = host.vcpu_capacity or Decimal(1)
    mem_capacity = host.memory_capacity or Decimal(1)
    cpu_fraction = float((used_cpu + vcpus) / cpu_capacity)
    mem_fraction = float((used_mem + memory) / mem_capacity)
    least_requested = ((1 - cpu_fraction) + (1 - mem_fraction)) / 2
    balanced = 1 - abs(cpu_fraction - mem_fraction)
    return round(least_requested + balanced, 6)


def hosts_filter_q() -> Q:
    """Hosts that may take new VMs at all (for the UI's capacity summary)."""
    return Q(enabled=True, maintenance=False, reachable=True)
