"""Tasks that make networks and interfaces real on the hosts (queue ``libvirt``).

``network_remove`` removes a deleted network from every host (then its row and its
quota go); ``nic_apply`` plugs an interface into its VM's domain (hot-plugged when the
guest runs) or takes it out. Both are safe to run twice: each step looks at what the
host holds first. ``nic_apply`` holds the VM's task lock, so it never interleaves with
a start, a redefine or a migration of that VM.

``nic_filter_apply`` redefines one interface's filter on its VM's host when its groups
change; ``security_group_apply`` redefines a security group's filter on the hosts of its
members (libvirt re-applies it to their running interfaces);
``security_group_forget`` removes a deleted group's filter from every host.
"""

from __future__ import annotations

import logging

from celery import shared_task

from compute.backends import BackendError, DomainNotFound, TransientBackendError, backend_for_host
from compute.choices import NicPhase
from compute.models import Host, Network, NetworkInterface, SecurityGroup
from compute.services import networks as services
from compute.services import security_groups as group_services
from compute.services import segments as segment_services
from compute.tasks.libvirt import vm_lock
from compute.tasks.locks import Busy, task_lock
from compute.texts import networks as network_texts

logger = logging.getLogger(__name__)

MAX_RETRIES = 6


def _backoff(task) -> int:
    return min(2 ** (task.request.retries + 1), 60)


@shared_task(bind=True, acks_late=True, name="compute.tasks.libvirt.network_remove")
def network_remove(self, network_id: int) -> None:
    """Stop and undefine the network on every host, then delete it."""
    network = Network.objects.select_related("tenant").filter(pk=network_id).first()
    if network is None:
        return
    try:
        for host in Host.objects.order_by("pk"):
            backend = backend_for_host(host)
            if backend.capabilities.get("networks"):
                segment_services.segment_forget(network, host)
                backend.network_delete(network.backend_name)
    except TransientBackendError as error:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=_backoff(self)) from error
        services.network_fail(
            network, network_texts.A_HOST_SILENT % {"error": error}, reason="DeleteFailed"
        )
        return
    except BackendError as error:
        services.network_fail(network, str(error), reason="DeleteFailed")
        return
    services.network_finalize_delete(network)


def _load(nic_id: int) -> NetworkInterface | None:
    return (
        NetworkInterface.objects.select_related(
            "tenant", "vm", "vm__tenant", "vm__host", "network", "network__tenant"
        )
        .filter(pk=nic_id)
        .first()
    )


def _under_vm_lock(task, nic_id: int, work, failed) -> None:
    """Run ``work(nic)`` holding the interface's VM's task lock (retried while another
    task holds it); a host's refusal, or its silence after the retries, is ``failed(nic,
    message)``."""
    nic = _load(nic_id)
    if nic is None:
        return
    try:
        with vm_lock(nic.vm_id):
            nic = _load(nic_id)
            if nic is None:
                return
            work(nic)
    except Busy:
        raise task.retry(countdown=1, max_retries=120) from None
    except TransientBackendError as error:
        if task.request.retries < MAX_RETRIES:
            raise task.retry(countdown=_backoff(task)) from error
        failed(nic, network_texts.THE_HOST_SILENT % {"error": error})
    except BackendError as error:
        failed(nic, str(error))


@shared_task(bind=True, acks_late=True, name="compute.tasks.libvirt.nic_apply")
def nic_apply(self, nic_id: int) -> None:
    """Converge one interface: into its VM's domain (Pending → Attached) or out of it
    (Detaching → gone)."""
    _under_vm_lock(self, nic_id, _converge, _failed)


def _failed(nic: NetworkInterface, message: str) -> None:
    # A removal that failed stays Detaching (deleting it again retries).
    phase = NicPhase.DETACHING if nic.phase == NicPhase.DETACHING else NicPhase.FAILED
    services.nic_observe(nic, phase, message)


def _converge(nic: NetworkInterface) -> None:
    vm = nic.vm
    backend = backend_for_host(vm.host) if vm.host_id else None
    if nic.phase == NicPhase.DETACHING:
        if backend is not None:
            try:
                backend.nic_detach(vm.domain_name, nic.mac)
            except DomainNotFound:
                pass
            if backend.capabilities.get("filters"):
                backend.filter_delete(nic.filter_name)
        services.nic_finalize_delete(nic)
        # A network this host only extended for this interface leaves it.
        segment_services.networks_left([nic.network_id], vm.host)
        if (
            backend is not None
            and nic.fixed_ip
            and nic.network.backend_name in (backend.network_names())
        ):
            # Free its fixed address in the host's dnsmasq.
            backend.network_ensure(services.network_spec(nic.network))
        return
    if backend is None:
        return  # placed later: its provisioning defines the domain with the interface
    try:
        backend.status(vm.domain_name)
    except DomainNotFound:
        return  # not defined yet: its provisioning puts the interface in
    services.vm_networks_prepare(vm, backend)
    backend.nic_attach(vm.domain_name, services.vm_nic_spec(nic))
    services.nic_observe(nic, NicPhase.ATTACHED)
    services.vm_addresses_observe(vm, services.vm_addresses_read(vm, backend))


@shared_task(bind=True, acks_late=True, name="compute.tasks.libvirt.nic_filter_apply")
def nic_filter_apply(self, nic_id: int) -> None:
    """An interface's groups changed: define its groups' filters and its own filter
    (now including them) on its VM's host; libvirt re-applies the filter to the running
    interface. Holds the VM's task lock, so it never interleaves with a start or a
    migration of that VM (they define the filters themselves)."""
    _under_vm_lock(self, nic_id, _filters_define, services.nic_filter_observe)


def _filters_define(nic: NetworkInterface) -> None:
    if nic.phase == NicPhase.DETACHING or not nic.vm.host_id:
        return
    # A host without packet filters has nothing to apply.
    group_services.vm_filters_prepare(nic.vm, backend_for_host(nic.vm.host))
    services.nic_filter_observe(nic)


@shared_task(bind=True, acks_late=True, name="compute.tasks.libvirt.security_group_apply")
def security_group_apply(self, group_id: int) -> None:
    """Define the group's filter, built from its rules as they are now, on every host
    running a member. One run at a time per group, so the last one defines the newest
    rules."""
    try:
        with task_lock(f"isotope:sg-lock:{group_id}", 120):
            group = SecurityGroup.objects.select_related("tenant").filter(pk=group_id).first()
            if group is None:
                return
            spec = group_services.group_filter_spec(group)
            done, host = 0, None
            for host in group_services.group_hosts(group):
                backend = backend_for_host(host)
                if not backend.capabilities.get("filters"):
                    continue
                backend.filter_define(spec)
                done += 1
    except Busy:
        raise self.retry(countdown=1, max_retries=120) from None
    except TransientBackendError as error:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=_backoff(self)) from error
        group_services.group_applied(group, 0, network_texts.A_HOST_SILENT % {"error": error})
        return
    except BackendError as error:
        group_services.group_applied(group, 0, services.host_refused(host, error))
        return
    group_services.group_applied(group, done)


@shared_task(bind=True, acks_late=True, name="compute.tasks.libvirt.security_group_forget")
def security_group_forget(self, filter_name: str) -> None:
    """A deleted group's filter goes from every host (no interface uses it any more)."""
    try:
        for host in Host.objects.order_by("pk"):
            backend = backend_for_host(host)
            if backend.capabilities.get("filters"):
                backend.filter_delete(filter_name)
    except TransientBackendError as error:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=_backoff(self)) from error
        logger.warning("filter %s may be left on a host: %s", filter_name, error)
    except BackendError as error:
        logger.warning("filter %s may be left on a host: %s", filter_name, error)
