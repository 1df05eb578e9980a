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

What is placed on a host is read from its row's counters, which database triggers keep
(migration 0034): a placement reads one row per host, however many VMs there are.
:func:`hosts_recount` repairs them from the VM and migration rows.
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
    live-migrated to it (they count on their target too until they have arrived): the
    host rows' counters, which the database keeps (see ``Host.placed_vcpus``)."""
    ids = [getattr(host, "pk", host) for host in hosts]
    if not ids:
        return {}
    table = Host._meta.db_table
    rows = sql.values(
        f"SELECT id, placed_vcpus, placed_memory_mib, placed_vms FROM {table} "  # noqa: S608
        f"WHERE id IN ({sql.placeholders(ids)})",
        ids,
    )
    return {h: (int(c), int(m), int(n)) for h, c, m, n in rows}


def host_sums(ids: list[int] | None = None) -> dict[int, tuple[int, int, int]]:
    """What ``host_usage`` should say, summed from the VM and migration rows (one
    statement): the check and repair of the counters (``hosts_recount``)."""
    return {h: (int(c or 0), int(m or 0), int(n)) for h, c, m, n in sql.values(*_sums(ids))}


def _sums(ids: list[int] | None) -> tuple[str, list]:
    """``host_sums``' statement and its params: one row (h, c, m, n) per host of ``ids``
    (None: of every host) with anything placed on it or on its way to it."""
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


def hosts_miscounted() -> dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """Hosts whose counters differ from their sums, by name: (counted, summed). One
    statement, so one snapshot: a commit between two reads cannot look like drift."""
    sums, params = _sums(None)
    table = Host._meta.db_table
    counted = "h.placed_vcpus, h.placed_memory_mib, h.placed_vms"
    summed = "COALESCE(s.c, 0), COALESCE(s.m, 0), COALESCE(s.n, 0)"
    rows = sql.values(
        f"SELECT h.name, {counted}, {summed} FROM {table} h "  # noqa: S608
        f"LEFT OUTER JOIN ({sums}) s ON s.h = h.id WHERE ({counted}) <> ({summed})",
        params,
    )
    return {name: (tuple(map(int, r[:3])), tuple(map(int, r[3:]))) for name, *r in rows}


def hosts_recount(ids: list[int] | None = None) -> dict[str, tuple]:
    """Set the counters of the hosts ``ids`` (None: all) to their sums, each host's row
    locked first; the hosts that were off, by name: (counted, summed). The database's
    triggers keep them right; this is the repair, should a row ever change with them
    off (a restore, a hand-written ``ALTER TABLE … DISABLE TRIGGER``)."""
    fixed = {}
    with transaction.atomic():
        count_own()  # before the counters are read: this transaction's VMs count
        hosts = Host.objects.select_for_update().order_by("pk")
        if ids is not None:
            hosts = hosts.filter(pk__in=ids)
        counted = {
            pk: (name, (c, m, n))
            for pk, name, c, m, n in hosts.values_list(
                "pk", "name", "placed_vcpus", "placed_memory_mib", "placed_vms"
            )
        }
        if not counted:
            return fixed  # no such host (any more)
        # A statement after the locks: it sees what their previous holders committed.
        summed = host_sums(list(counted))
        for pk, (name, was) in counted.items():
            right = summed.get(pk, (0, 0, 0))
            if was != right:
                Host.objects.filter(pk=pk).update(
                    placed_vcpus=right[0], placed_memory_mib=right[1], placed_vms=right[2]
                )
                fixed[name] = (was, right)
    return fixed


# PostgreSQL counts a VM's insert at the commit (migration 0034): a create that writes
# its rows first takes its host's lock by its last statements only.
_INSERT_COUNTER = "compute_vm_placed_insert"


def count_own() -> None:
    """Count this transaction's VM inserts on their hosts now, not at the commit (each
    locks its host's row), so that the counters read next include them. SQLite counts
    them at the insert."""
    if connection.vendor == "postgresql":
        # One round trip: a string without values is never prepared (portal.postgresql),
        # so it may hold both commands.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SET CONSTRAINTS {_INSERT_COUNTER} IMMEDIATE; "
                f"SET CONSTRAINTS {_INSERT_COUNTER} DEFERRED"
            )


def lock_hosts(ids) -> None:
    """Lock the host rows ``ids`` in id order until the transaction ends: before a write
    whose triggers move the counters of several hosts (each trigger locks its own when
    it runs, in the order the rows change), so that two such writes cannot wait on each
    other's hosts. (SQLite: one writer at a time.)"""
    wanted = sorted({pk for pk in ids if pk is not None})
    if wanted and connection.features.has_select_for_update:
        list(Host.objects.select_for_update().filter(pk__in=wanted).order_by("pk").values("pk"))


def _lock_usage(host_id: int) -> tuple[int, int, int] | None:
    """Lock one host row until the transaction (or savepoint) ends and read its
    counters; None if it is gone. ``FOR UPDATE`` reads the row as its last locker
    committed it. (SQLite has one writer at a time and no row locks.)"""
    table = Host._meta.db_table
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    rows = sql.values(
        f"SELECT placed_vcpus, placed_memory_mib, placed_vms FROM {table} WHERE id = %s{lock}",  # noqa: S608
        [host_id],
    )
    return tuple(int(x) for x in rows[0]) if rows else None


def schedule(
    *,
    vcpus: int,
    memory_mib: int,
    node_selector: dict | None = None,
    exclude: tuple[int, ...] = (),
    lock: bool = True,
    fresh: bool = False,
) -> Placement:
    """Choose a host or raise ``NoHostAvailable`` saying why each host was filtered.

    Hosts are filtered and scored from an unlocked read. With ``lock`` only the chosen
    host's row is then locked (until the caller's transaction ends) and its usage read
    again under the lock: a placement that committed meanwhile is counted, so concurrent
    placements never overcommit a host. When the host no longer fits, its lock is given
    back (a savepoint) and the next best candidate is tried, so one placement holds at
    most one host lock at a time and placements on different hosts never wait for each
    other.

    The counters read include this transaction's own VMs (``count_own``). ``fresh``:
    the caller's transaction has written no VM yet, so there is nothing of its own to
    count (a create in a transaction of its own: one statement fewer).
    """
    if lock and not transaction.get_connection().in_atomic_block:
        # The lock would end with the statement: nothing would stop an overcommit.
        raise transaction.TransactionManagementError("schedule(lock=True) needs a transaction.")
    # Written out: every placement reads them (portal.sql), with what is placed on each.
    # On PostgreSQL one text whatever is excluded, with a value: prepared once and kept
    # (a text without values is never prepared, portal.postgresql).
    table = Host._meta.db_table
    if connection.vendor == "postgresql":
        where, params = f"{table}.id <> ALL(%s)", [list(exclude)]
    elif exclude:
        where, params = f"{table}.id NOT IN ({sql.placeholders(exclude)})", list(exclude)
    else:
        where, params = "1 = 1", []
    if not fresh:
        count_own()
    hosts = sql.select(Host, where, params, order_by=f"{table}.id")
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
        usage = {h.pk: (h.placed_vcpus, h.placed_memory_mib, h.placed_vms) for h in eligible}
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
    # This transaction's own VMs are counted already: schedule() counted them before its
    # read, or the transaction had none (fresh).
    used = _lock_usage(host.pk)
    if used is None:
        raise HostTaken("removed")
    reason = _capacity(host, vcpus, memory_mib, used)
    if reason:
        raise HostTaken(reason)
    return Placement(host, _score(host, vcpus, memory_mib, {host.pk: used}))


class HostTaken(Exception):
    """The chosen host filled up between the unlocked read and its lock."""

    def __init__(self, reason: str):
        self.reason = reason


def confirm(vm: VirtualMachine, *, fresh: bool = False) -> None:
    """Lock the host of ``vm``, saved in this transaction on a host chosen from an
    unlocked read (``schedule(lock=False)``), and check that the host still takes it
    with everything placed there meanwhile; ``HostTaken`` when it does not (the caller
    places again). The lock is held until the transaction ends, as ``schedule``'s.

    ``fresh``: ``vm`` is the only VM this transaction wrote. On PostgreSQL its insert
    then counts at the commit, under this lock, and the counters read are the others';
    otherwise this transaction's VMs are counted first (``count_own``) and ``vm`` is
    taken out of what is read (SQLite counts at the insert)."""
    own_counted = not (fresh and connection.vendor == "postgresql")
    if own_counted:
        count_own()
    used = _lock_usage(vm.host_id)
    if used is None:
        raise HostTaken("removed")
    if own_counted:  # the counters include this VM: take it out
        used = (used[0] - vm.vcpus, used[1] - vm.memory_mib, used[2] - 1)
    reason = _capacity(vm.host, vm.vcpus, vm.memory_mib, used)
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
    count_own()
    host = Host.objects.select_for_update().get(pk=host.pk)
    used_cpu, used_mem, placed = host.placed_vcpus, host.placed_memory_mib, host.placed_vms
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
