"""Compute backends. ``backend_for_host`` picks one from the host record's data."""

from __future__ import annotations

from compute.backends.base import (
    BackendError,
    ComputeBackend,
    DiskSpec,
    DomainNotFound,
    DomainSpec,
    DomainStatus,
    FilterRule,
    FilterSpec,
    HostFacts,
    MigrationOptions,
    MigrationProgress,
    NetworkSpec,
    NicSpec,
    PoolInfo,
    TransientBackendError,
    TunnelSpec,
    VolumeInfo,
    VolumeNotFound,
    VolumeSpec,
)


def backend_for_host(host) -> ComputeBackend:
    """The backend driving ``host``. Every host is a libvirt URI today; the URI scheme
    (``qemu``, ``qemu+tcp``, ``test``) selects the libvirt driver, not our code."""
    from compute.backends.libvirt import LibvirtBackend

    return LibvirtBackend(
        uri=host.uri,
        virt_type=host.effective_virt_type or None,
        storage_path=host.volume_path,
        vnc_ports=(host.vnc_port_min, host.vnc_port_max),
    )


def pool_name() -> str:
    """The name of every host's volume pool (the same on each, so a domain's volume
    disks resolve on whichever host it runs)."""
    from django.conf import settings

    return settings.ISOTOPE_VOLUME_POOL


__all__ = [
    "BackendError",
    "ComputeBackend",
    "DiskSpec",
    "DomainNotFound",
    "DomainSpec",
    "DomainStatus",
    "FilterRule",
    "FilterSpec",
    "HostFacts",
    "MigrationOptions",
    "MigrationProgress",
    "NetworkSpec",
    "NicSpec",
    "PoolInfo",
    "TransientBackendError",
    "TunnelSpec",
    "VolumeInfo",
    "VolumeNotFound",
    "VolumeSpec",
    "backend_for_host",
    "pool_name",
]
