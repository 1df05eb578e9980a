"""Host services: register hosts and read their facts."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from compute.backends import BackendError, backend_for_host
from compute.backends.libvirt.backend import LibvirtBackend
from compute.choices import VirtType
from compute.models import Host
from tenants.services import audit_record

logger = logging.getLogger(__name__)


def host_check(host: Host, *, actor=None) -> Host:
    """Read capacity and capabilities from the host; record reachability."""
    backend = backend_for_host(host)
    try:
        facts = backend.facts()
    except BackendError as error:
        Host.objects.filter(pk=host.pk).update(reachable=False, message=str(error)[:500])
        host.reachable, host.message = False, str(error)[:500]
        return host
    virt = facts.virt_type
    if isinstance(backend, LibvirtBackend) and not backend.is_test:
        virt = host.virt_type if host.virt_type != VirtType.AUTO else _probed_virt_type()
    Host.objects.filter(pk=host.pk).update(
        cpus=facts.cpus,
        memory_mib=facts.memory_mib,
        capabilities=facts.capabilities,
        effective_virt_type=virt,
        reachable=True,
        last_seen=timezone.now(),
        message="",
    )
    host.refresh_from_db()
    if actor is not None:
        audit_record(actor=actor, action="host.check", target=f"host/{host.name}")
    return host


def _probed_virt_type() -> str:
    """KVM only where the local infrastructure's probe guest really booted under it."""
    try:
        from tools.infra import read_state

        return read_state("libvirt").get("virt_type") or VirtType.QEMU
    except Exception:  # noqa: BLE001 - no infra state on a production host: be safe
        return VirtType.QEMU


@transaction.atomic
def host_register(*, actor, name: str, uri: str, **fields) -> Host:
    """Add a host (or update its URI) and read its facts."""
    host, _ = Host.objects.update_or_create(name=name, defaults={"uri": uri, **fields})
    audit_record(actor=actor, action="host.register", target=f"host/{name}", detail={"uri": uri})
    transaction.on_commit(lambda: host_check(host))
    return host
