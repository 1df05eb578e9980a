"""Per-host libvirt queues: a Celery router that sends a host's tasks to ``libvirt.<host>``.

A task that acts on one libvirt host (a VM's provision or action, a volume, a snapshot,
an interface, a migration, the host's reconcile, check and metrics) goes to the queue
``libvirt.<host name>`` when that host is named in ``ISOTOPE_HOST_QUEUES`` (``*`` names
every host), so that a worker near the host (``celery worker -Q libvirt.node1``) runs it.
Everything else, and every host not named, stays on the general ``libvirt`` queue (the
sweeps, network removal, a VM not placed yet). With the setting empty (the default, and
what ``make run`` and the tests' worker use) no task is routed by host.

The host is read from the database when the task is sent (one indexed query); a migration
goes to its source host's queue: the source's libvirt drives a live migration.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

GENERAL = "libvirt"


def host_queue(host_name: str) -> str:
    """The queue of one host's tasks."""
    return f"{GENERAL}.{host_name}"


def _vm_host(vm_id) -> str | None:
    from compute.models import VirtualMachine

    return VirtualMachine.objects.filter(pk=vm_id).values_list("host__name", flat=True).first()


def _host(host_id) -> str | None:
    from compute.models import Host

    return Host.objects.filter(pk=host_id).values_list("name", flat=True).first()


def _migration_source(migration_id) -> str | None:
    from compute.models import Migration

    return Migration.objects.filter(pk=migration_id).values_list("source__name", flat=True).first()


def _volume_host(volume_id) -> str | None:
    from compute.models import Volume

    return Volume.objects.filter(pk=volume_id).values_list("host__name", flat=True).first()


def _snapshot_host(snapshot_id) -> str | None:
    from compute.models import Snapshot

    row = Snapshot.objects.filter(pk=snapshot_id).values_list("host__name", "vm__host__name")
    names = row.first() or (None, None)
    return names[0] or names[1]


def _nic_host(nic_id) -> str | None:
    from compute.models import NetworkInterface

    return (
        NetworkInterface.objects.filter(pk=nic_id).values_list("vm__host__name", flat=True).first()
    )


# Task name → (name of its first argument, how that argument leads to the host's name).
HOST_TASKS: dict[str, tuple[str, Callable[[object], str | None]]] = {
    "compute.tasks.libvirt.vm_provision": ("vm_id", _vm_host),
    "compute.tasks.libvirt.vm_apply": ("vm_id", _vm_host),
    "compute.tasks.libvirt.vm_reboot": ("vm_id", _vm_host),
    "compute.tasks.libvirt.vm_redefine": ("vm_id", _vm_host),
    "compute.tasks.libvirt.vm_stop_enforce": ("vm_id", _vm_host),
    "compute.tasks.libvirt.vm_ready_watch": ("vm_id", _vm_host),
    "compute.tasks.libvirt.host_reconcile": ("host_id", _host),
    "compute.tasks.libvirt.host_check": ("host_id", _host),
    "compute.tasks.libvirt.migration_run": ("migration_id", _migration_source),
    "compute.tasks.libvirt.volume_apply": ("volume_id", _volume_host),
    "compute.tasks.libvirt.snapshot_apply": ("snapshot_id", _snapshot_host),
    "compute.tasks.libvirt.nic_apply": ("nic_id", _nic_host),
    "compute.tasks.libvirt.nic_filter_apply": ("nic_id", _nic_host),
    "monitoring.tasks.metrics_collect": ("host_id", _host),
}


def queued_hosts() -> set[str] | None:
    """The hosts with their own queue: ``None`` for every host, an empty set for none."""
    names = {name.strip() for name in settings.ISOTOPE_HOST_QUEUES.split(",") if name.strip()}
    return None if "*" in names else names


def route_host_task(name, args, kwargs, options, task=None, **kw):
    """Celery router (first in ``CELERY_TASK_ROUTES``): ``{"queue": "libvirt.<host>"}``
    for a host's task when the host has its own queue, else ``None`` (the next router,
    the glob table, decides)."""
    if name not in HOST_TASKS:
        return None
    hosts = queued_hosts()
    if hosts == set():
        return None
    argument, lookup = HOST_TASKS[name]
    value = args[0] if args else (kwargs or {}).get(argument)
    if value is None:
        return None
    host_name = lookup(value)
    if host_name is None or (hosts is not None and host_name not in hosts):
        return None
    return {"queue": host_queue(host_name)}
