"""Compute backends. ``backend_for_host`` picks one from the host record's data."""

from __future__ import annotations

from compute.backends.base import (
    BackendError,
    ComputeBackend,
    DomainNotFound,
    DomainSpec,
    DomainStatus,
    HostFacts,
    MigrationOptions,
    MigrationProgress,
    TransientBackendError,
)


def backend_for_host(host) -> ComputeBackend:
    """The backend driving ``host``. Every host is a libvirt URI today; the URI scheme
    (``qemu``, ``qemu+tcp``, ``test``) selects the libvirt driver, not our code."""
    from compute.backends.libvirt import LibvirtBackend

    return LibvirtBackend(
        uri=host.uri,
        virt_type=host.effective_virt_type or None,
        vnc_ports=(host.vnc_port_min, host.vnc_port_max),
    )


__all__ = [
    "BackendError",
    "ComputeBackend",
    "DomainNotFound",
    "DomainSpec",
    "DomainStatus",
    "HostFacts",
    "MigrationOptions",
    "MigrationProgress",
    "TransientBackendError",
    "backend_for_host",
]
