"""VM placement, after kube-scheduler: filter hosts by predicates, then score them.

Filters: enabled, not in maintenance, reachable, labels match the VM's node selector,
fits after overcommit (vCPUs and memory already placed + requested ≤ capacity × ratio),
a console port left in the host's range (one per VM placed there).
Scores: least requested (free fraction after placement, averaged over CPU and memory)
plus balanced allocation (1 − |cpu fraction − memory fraction|). The best total wins;
ties go to the host name for stable results.

:func:`schedule` places a new VM; :func:`confirm` locks and re-checks a host chosen
without the lock once the VM's rows are written; :func:`check_host` runs the same filter
for one host (growing a stopped VM where it is) and refuses with the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Q, Sum

from compute.choices import SLOT_MIGRATION_PHASES
from compute.models import Host, Migration, VirtualMachine
from portal import sql
from portal.exceptions import Conflict


class NoHostAvailable(Conflict):
    title = "No host available"
    slug = "no-host-available"


@dataclass(frozen=True)
class Placement:
    host: Host
    score: float


def host_usage(hosts) -> dict[int, tuple[int, int, int]]:
    """vCPUs, MiB and VMs placed on each host by VMs that still exist, and by VMs being
    live-migrated to it (they count on their target too until they have arrived).

    One statement, written out: it runs on every placement, where the ORM's compiling
    of the equivalent aggregate queries cost more CPU than the database did."""
    ids = [getattr(host, "pk", host) for host in hosts]
    if not ids:
        return {}
    rows = sql.values(*_usage_statement(ids))
    return {h: (int(c or 0), int(m or 0), int(n)) for h, c, m, n in rows}


def _usage_statement(ids: list[int] | None) -> tuple[str, list]:
    """``host_usage``'s statement and its params: one row (h, c, m, n) per host of
    ``ids`` (None: of every host) with anything placed on it or on its way to it."""
    vm, migration = VirtualMachine._meta.db_table, Migration._meta.db_table
    phases = list(SLOT_MIGRATION_PHASES)
    if ids is None:
        on_host, to_host, params = "host_id IS NOT NULL", "", phases
    else:
        marks = sql.placeholders(ids)
        on_host, to_host = f"host_id IN ({marks})", f"g.target_id IN ({marks}) AND "
        params = [*ids, *ids, *phases]
    # Only table names and placeholders are formatted in; values are parameters.
    statement = (
        f"SELECT h, SUM(c) AS c, SUM(m) AS m, COUNT(*) AS n FROM ("  # noqa: S608
        f"SELECT host_id AS h, vcpus AS c, memory_mib AS m FROM {vm} WHERE {on_host} "
        f"UNION ALL SELECT g.target_id, v.vcpus, v.memory_mib FROM {migration} g "
        f"JOIN {vm} v ON v.id = g.vm_id "
        f"WHERE {to_host}g.phase IN ({sql.placeholders(phases)})"
        f") u GROUP BY h"
    )
    return statement, params


def _hosts_with_usage(where: str, params) -> list[Host]:
    """The hosts ``where`` selects (in id order), each with ``host_usage``'s numbers
    as ``_used_vcpus``, ``_used_memory`` and ``_placed``: joined to its grouped
    statement, one statement that reads every host's VMs once."""
    usage, usage_params = _usage_statement(None)
    table = Host._meta.db_table
    return sql.select(
        Host,
        where,
        params,
        order_by=f"{table}.id",
        join=(f" LEFT OUTER JOIN ({usage}) placed ON placed.h = {table}.id", usage_params),
        annotate={
            "_used_vcpus": ("COALESCE(placed.c, 0)", []),
            "_used_memory": ("COALESCE(placed.m, 0)", []),
            "_placed": ("COALESCE(placed.n, 0)", []),
        },
    )


def _lock(host_id: int) -> bool:
    """Lock one host row until the transaction (or savepoint) ends; False if it is gone."""
    if not connection.features.has_select_for_update:
        return Host.objects.filter(pk=host_id).exists()  # SQLite: one writer at a time
    with connection.cursor() as cursor:
        table = Host._meta.db_table
        cursor.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", [host_id])  # noqa: S608
        return cursor.fetchone() is not None


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
    # Written out: every placement reads them (portal.sql), with what is placed on each.
    table = Host._meta.db_table
    where, params = (
        (f"{table}.id NOT IN ({sql.placeholders(exclude)})", exclude) if exclude else ("1 = 1", ())
    )
    hosts = _hosts_with_usage(where, params)
    if not hosts:
        raise NoHostAvailable("No hosts are registered. Ask a platform admin to add one.")
    reasons: dict[str, int] = {}
    selector = node_selector or {}
    eligible = []
    for host in hosts:
        reason = _eligibility(host, selector)
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
        else:
            eligible.append(host)
    if lock and len(eligible) == 1:
        # One possible host: the unlocked read could only say what the locked one says.
        candidates = [Placement(eligible[0], 0.0)]
    else:
        usage = {h.pk: (int(h._used_vcpus), int(h._used_memory), int(h._placed)) for h in eligible}
        candidates = []
        for host in eligible:
            reason = _capacity(host, vcpus, memory_mib, usage.get(host.pk, (0, 0, 0)))
            if reason:
                reasons[reason] = reasons.get(reason, 0) + 1
                continue
            candidates.append(Placement(host, _score(host, vcpus, memory_mib, usage)))
        candidates.sort(key=lambda p: (p.score, [-ord(c) for c in p.host.name]), reverse=True)
    if not lock:
        if not candidates:
            raise NoHostAvailable(_refusal(reasons, len(hosts)))
        return candidates[0]
    for number, candidate in enumerate(candidates):
        last = number == len(candidates) - 1
        try:
            # A savepoint, so that a host that no longer fits is unlocked before the
            # next is tried (the last one's lock is simply kept until the end).
            with transaction.atomic(savepoint=not last):
                return _place_locked(candidate.host, vcpus, memory_mib)
        except HostTaken as taken:
            reasons[taken.reason] = reasons.get(taken.reason, 0) + 1
    raise NoHostAvailable(_refusal(reasons, len(hosts)))


def _place_locked(host: Host, vcpus: int, memory_mib: int) -> Placement:
    if not _lock(host.pk):
        raise HostTaken("removed")
    # A statement of its own after the lock: its snapshot includes whatever the lock's
    # previous holder committed (the locking statement's own snapshot may not).
    usage = host_usage([host])
    reason = _capacity(host, vcpus, memory_mib, usage.get(host.pk, (0, 0, 0)))
    if reason:
        raise HostTaken(reason)
    return Placement(host, _score(host, vcpus, memory_mib, usage))


class HostTaken(Exception):
    """The chosen host filled up between the unlocked read and its lock."""

    def __init__(self, reason: str):
        self.reason = reason


def confirm(vm: VirtualMachine) -> None:
    """Lock the host of ``vm``, saved in this transaction on a host chosen from an
    unlocked read (``schedule(lock=False)``), and check that the host still takes it
    with everything placed there meanwhile; ``HostTaken`` when it does not (the caller
    places again). The lock is held until the transaction ends, as ``schedule``'s."""
    if not _lock(vm.host_id):
        raise HostTaken("removed")
    # After the lock, in a statement of its own (see _place_locked). The sums count
    # this transaction's own row: take it out, then ask whether it fits.
    used_cpu, used_mem, placed = host_usage([vm.host_id]).get(vm.host_id, (0, 0, 0))
    others = (used_cpu - vm.vcpus, used_mem - vm.memory_mib, placed - 1)
    reason = _capacity(vm.host, vm.vcpus, vm.memory_mib, others)
    if reason:
        raise HostTaken(reason)


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
    return _eligibility(host, selector) or _capacity(host, vcpus, memory, used)


def _eligibility(host: Host, selector: dict) -> str:
    """Why ``host`` takes no new VMs of this selector at all, whatever their size."""
    if not host.enabled:
        return "disabled"
    if host.maintenance:
        return "in maintenance"
    if not host.reachable:
        return "unreachable"
    if any(str(host.labels.get(k)) != str(v) for k, v in selector.items()):
        return "not matching the node selector"
    return ""


def _capacity(host: Host, vcpus: int, memory: int, used: tuple[int, int, int]) -> str:
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
