"""libvirt backend: QEMU/KVM hosts and libvirt's test driver."""

from compute.backends.libvirt.backend import LibvirtBackend

__all__ = ["LibvirtBackend"]
