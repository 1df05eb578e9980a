"""Formats of the messages a VM clone stores: the events on the source's and the
clone's timelines, and on each copied disk's (``portal.texts``).

A clone's event names its copies (``disks``: "source → copy, ..."), its size, and its
root disk's size when it has one; one format per variant: requested (on the source) or
accepted (on the clone), from a snapshot or from the VM's disks, with or without a root
disk, or with no disks at all."""

from django.utils.translation import gettext_noop

REQUESTED = gettext_noop(
    "Clone %(clone)s requested: a copy of %(source)s (%(disks)s; %(vcpus)s vCPU, "
    "%(memory_mib)s MiB, root disk %(disk_gib)s GiB) by %(actor)s."
)
REQUESTED_NO_ROOT = gettext_noop(
    "Clone %(clone)s requested: a copy of %(source)s (%(disks)s; %(vcpus)s vCPU, "
    "%(memory_mib)s MiB) by %(actor)s."
)
REQUESTED_NO_DISKS = gettext_noop(
    "Clone %(clone)s requested: a copy of %(source)s (no disks; %(vcpus)s vCPU, "
    "%(memory_mib)s MiB) by %(actor)s."
)
REQUESTED_FROM_SNAPSHOT = gettext_noop(
    "Clone %(clone)s requested: a copy of %(source)s (from snapshot %(snapshot)s: "
    "%(disks)s; %(vcpus)s vCPU, %(memory_mib)s MiB, root disk %(disk_gib)s GiB) by "
    "%(actor)s."
)
REQUESTED_FROM_SNAPSHOT_NO_ROOT = gettext_noop(
    "Clone %(clone)s requested: a copy of %(source)s (from snapshot %(snapshot)s: "
    "%(disks)s; %(vcpus)s vCPU, %(memory_mib)s MiB) by %(actor)s."
)
ACCEPTED = gettext_noop(
    "Accepted: a copy of %(source)s (%(disks)s; %(vcpus)s vCPU, %(memory_mib)s MiB, root "
    "disk %(disk_gib)s GiB) by %(actor)s."
)
ACCEPTED_NO_ROOT = gettext_noop(
    "Accepted: a copy of %(source)s (%(disks)s; %(vcpus)s vCPU, %(memory_mib)s MiB) by %(actor)s."
)
ACCEPTED_NO_DISKS = gettext_noop(
    "Accepted: a copy of %(source)s (no disks; %(vcpus)s vCPU, %(memory_mib)s MiB) by %(actor)s."
)
ACCEPTED_FROM_SNAPSHOT = gettext_noop(
    "Accepted: a copy of %(source)s (from snapshot %(snapshot)s: %(disks)s; %(vcpus)s vCPU, "
    "%(memory_mib)s MiB, root disk %(disk_gib)s GiB) by %(actor)s."
)
ACCEPTED_FROM_SNAPSHOT_NO_ROOT = gettext_noop(
    "Accepted: a copy of %(source)s (from snapshot %(snapshot)s: %(disks)s; %(vcpus)s vCPU, "
    "%(memory_mib)s MiB) by %(actor)s."
)
QUOTA_EXCEEDED = gettext_noop("Clone %(clone)s: %(error)s")
DISK_ACCEPTED = gettext_noop(
    "Accepted: a full copy of %(source)s (%(size_gib)s GiB) as %(device)s of %(vm)s."
)
