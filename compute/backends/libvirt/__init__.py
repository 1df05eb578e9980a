"""libvirt backend: QEMU/KVM hosts and libvirt's test driver.

``LibvirtBackend`` is imported on first use, so that ``compute.backends.libvirt.xml``
(the domain definition) can be used without the libvirt bindings, e.g. by
``tools.infra``, which runs before the virtualenv exists.
"""

from __future__ import annotations

__all__ = ["LibvirtBackend"]


def __getattr__(name: str):
    if name == "LibvirtBackend":
        from compute.backends.libvirt.backend import LibvirtBackend

        return LibvirtBackend
    raise AttributeError(name)
