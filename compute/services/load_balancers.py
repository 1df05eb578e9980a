"""Services: a tenant's load-balanced name in front of its VMs and pods.

A :class:`~compute.models.Service` selects the tenant's VMs and workloads by label
(every selector entry must match the VM's or the workload's labels) and has ports
(name, TCP/UDP, port, targetPort) and a type (ClusterIP or NodePort). On its cluster
it is a Service *without* a selector and one EndpointSlice
(``kubernetes.io/service-name``, managed by Isotope) whose endpoints
:func:`service_sync` keeps equal to the members:

- each running pod of a matching workload that has an address (from the cluster),
  ``ready`` as the pod's readiness;
- each running (or migrating) matching VM, at the addresses Isotope knows for its
  attached interfaces (the DHCP leases recorded on them, else the fixed IP), ``ready``
  as the VM's Ready condition.

Members change when a VM's phase, readiness or addresses change (``vm_changed``, from
the VM and interface services), when a pod comes, goes or changes readiness
(``workload_changed``, from the cluster watch), when the selector or ports change,
and on each cluster reconcile; each of these enqueues
:func:`compute.tasks.kubernetes.sync_service_endpoints`, which is idempotent. The sync
records what it wrote with a compare-and-set on the spec's generation, so a sync
computed from an older selector never overwrites a newer one's result.
"""

from __future__ import annotations

import ipaddress
import logging
import re

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from compute.backends.containers import (
    Endpoint,
    LoadBalancerSpec,
    LoadBalancerStatus,
    ServicePort,
)
from compute.choices import ConditionStatus, NicPhase, Phase, PortProtocol, ServicePhase
from compute.labels import label_map_errors
from compute.models import NetworkInterface, Service, VirtualMachine, Workload
from compute.texts import services as service_texts
from monitoring.services import event_publish, resource_forget, resource_publish
from portal import sql
from portal.exceptions import Conflict, NotFound, ValidationError
from tenants.models import Tenant
from tenants.services import audit_record, authorize

logger = logging.getLogger(__name__)

EVENT_KIND = "service"
MAX_PORTS = 20
# The members a Service lists, in EndpointSlices of ISOTOPE_ENDPOINTS_PER_SLICE each
# (one slice holds at most 1,000; Kubernetes' own controller writes 100 per slice).
MAX_ENDPOINTS = 10_000
SERVICE_TYPES = ("ClusterIP", "NodePort")
# Kubernetes Service names are DNS-1035 labels (a letter first); port names IANA
# service names (at most 15 characters, at least one letter).
_SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# VM phases in which its guest serves (a live-migrated guest never stops).
SERVING_PHASES = (Phase.RUNNING, Phase.MIGRATING)

SERVICE_ACTIONS: dict[str, str] = {
    "update": "service.update",
    "delete": "service.delete",
}


def service_actions(service: Service, role: str | None) -> list[str]:
    """The service buttons a user with ``role`` sees (none while it is deleted)."""
    from tenants.permissions import role_allows

    if service.deleting:
        return []
    return [name for name, perm in SERVICE_ACTIONS.items() if role_allows(role, perm)]


# --- Validation ------------------------------------------------------------------------
def _check_name(tenant: Tenant, name, errors: dict) -> str:
    name = str(name or "").strip()
    if not name:
        errors["name"] = [gettext("A name is required.")]
    elif len(name) > 63 or not _SERVICE_NAME.fullmatch(name):
        errors["name"] = [
            gettext(
                "Use at most 63 lowercase letters, digits and hyphens, starting with a "
                "letter and ending with a letter or digit."
            )
        ]
    elif Service.objects.filter(tenant=tenant, name=name).exists():
        errors["name"] = [gettext("A service named %(name)s exists already.") % {"name": name}]
    elif Workload.objects.filter(tenant=tenant, name=name).exclude(service_type="").exists():
        # A workload's own Service has the workload's name in the same namespace.
        errors["name"] = [
            gettext("The workload %(name)s has a Service of this name.") % {"name": name}
        ]
    return name


def _check_type(value, errors: dict) -> str:
    text = str(value or "ClusterIP").strip()
    if text not in SERVICE_TYPES:
        errors["service_type"] = [gettext("Choose ClusterIP or NodePort.")]
    return text


def _check_selector(value, errors: dict) -> dict:
    problems = label_map_errors(value)
    if problems:
        errors["selector"] = problems
        return {}
    if not value:
        errors["selector"] = [
            gettext("Give at least one label, e.g. app=web: the members carry all of them.")
        ]
        return {}
    return dict(value)


def _port_number(value, field: str, index: int, errors: dict) -> int | None:
    text = str(value if value is not None else "").strip()
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or not 1 <= number <= 65535:
        errors[f"ports[{index}].{field}"] = [
            gettext("%(value)s is not a port number (1–65535).") % {"value": text or "''"}
        ]
        return None
    return number


def _target_port_name(text: str, index: int, errors: dict) -> str | None:
    """A named targetPort: the name of a pod's container port (as Kubernetes allows)."""
    has_letter = any("a" <= c <= "z" for c in text)
    if len(text) > 15 or not _PORT_NAME.fullmatch(text) or "--" in text or not has_letter:
        errors[f"ports[{index}].target_port"] = [
            gettext(
                "%(value)s is neither a port number (1–65535) nor a container port name "
                "(at most 15 lowercase letters, digits and single hyphens, with a letter)."
            )
            % {"value": text}
        ]
        return None
    return text


def _check_ports(value, errors: dict) -> list[dict]:
    """Each port as ``{name, protocol, port, targetPort}`` (targetPort defaults to
    port); names unique, required once there is more than one port."""
    if not isinstance(value, list) or not value:
        errors["ports"] = [gettext("Give at least one port.")]
        return []
    if len(value) > MAX_PORTS:
        errors["ports"] = [gettext("At most %(count)s ports.") % {"count": MAX_PORTS}]
        return []
    clean, names, pairs = [], set(), set()
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            errors[f"ports[{index}]"] = [gettext("A port is a map of name, protocol, port.")]
            continue
        name = str(item.get("name") or "").strip()
        if not name and len(value) > 1:
            errors[f"ports[{index}].name"] = [gettext("Name each port when there are several.")]
        elif name and (len(name) > 15 or not _PORT_NAME.fullmatch(name) or name.isdigit()):
            errors[f"ports[{index}].name"] = [
                gettext(
                    "At most 15 lowercase letters, digits and hyphens, with a letter, "
                    "starting and ending with a letter or digit."
                )
            ]
        elif name in names:
            errors[f"ports[{index}].name"] = [
                gettext("Another port is named %(name)s.") % {"name": name}
            ]
        names.add(name)
        protocol = str(item.get("protocol") or "TCP").strip().upper()
        if protocol not in PortProtocol.values:
            errors[f"ports[{index}].protocol"] = [gettext("Choose TCP or UDP.")]
        port = _port_number(item.get("port"), "port", index, errors)
        target = item.get("target_port")
        if target in (None, ""):
            target = port
        elif isinstance(target, str) and not target.strip().isdigit() and target.strip():
            target = _target_port_name(target.strip(), index, errors)
        else:
            target = _port_number(target, "target_port", index, errors)
        if port is not None and (port, protocol) in pairs:
            errors[f"ports[{index}].port"] = [
                gettext("Port %(port)s/%(protocol)s is listed twice.")
                % {"port": port, "protocol": protocol}
            ]
        pairs.add((port, protocol))
        clean.append({"name": name, "protocol": protocol, "port": port, "targetPort": target})
    return clean


# --- Writes ----------------------------------------------------------------------------
def service_create(
    *, actor, tenant: Tenant, name, selector, ports, service_type="ClusterIP"
) -> Service:
    """Validate and record a Service (``Pending``); its task makes it on the cluster.
    Nothing is saved when a check fails."""
    from compute.services.workloads import default_cluster

    authorize(actor=actor, tenant=tenant, permission="service.create", target=f"service/{name}")
    errors: dict[str, list[str]] = {}
    name = _check_name(tenant, name, errors)
    service_type = _check_type(service_type, errors)
    selector = _check_selector(selector, errors)
    ports = _check_ports(ports, errors)
    if errors:
        raise ValidationError(gettext("The service is not valid."), errors=errors)
    cluster = default_cluster()
    if cluster is None:
        raise Conflict(
            gettext("No Kubernetes cluster is registered: ask a platform admin."),
            errors={"name": [gettext("No cluster.")]},
        )
    try:
        with transaction.atomic():
            service = Service.objects.create(
                tenant=tenant,
                cluster=cluster,
                name=name,
                service_type=service_type,
                selector=selector,
                ports=ports,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            _audit(actor, service, "service.create", {"selector": selector, "ports": ports})
            _event(
                service,
                new_object=True,
                reason="Created",
                message=service_texts.SERVICE_CREATED
                % {"service": name, "service_type": service_type},
            )
            _publish(service)
            _sync_later(service.pk)
    except IntegrityError:
        raise ValidationError(
            gettext("The service is not valid."),
            errors={"name": [gettext("A service named %(name)s exists already.") % {"name": name}]},
        ) from None
    return service


def _locked(service: Service) -> Service:
    found = (
        Service.objects.select_for_update(of=("self",))
        .select_related("tenant", "cluster")
        .filter(pk=service.pk)
        .first()
    )
    if found is None:
        raise NotFound(gettext("Service %(name)s not found.") % {"name": service.name})
    return found


def _write(service: Service, **fields) -> Service:
    """A row-locked write: the version grows in the database."""
    Service.objects.filter(pk=service.pk).update(
        **fields, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    service.refresh_from_db()
    return service


# How a changed spec field is named in the service's events.
_SPEC_WORDS = {"service_type": "type", "selector": "selector", "ports": "ports"}


def service_update(
    *, actor, service: Service, service_type=None, selector=None, ports=None
) -> Service:
    """Replace the type (ClusterIP or NodePort), the selector and/or the ports (the
    API's PATCH, the page's form); the cluster's Service is applied again from the new
    generation and the members follow."""
    authorize(
        actor=actor,
        tenant=service.tenant,
        permission="service.update",
        target=f"service/{service.name}",
    )
    errors: dict[str, list[str]] = {}
    fields = {}
    if service_type is not None:
        fields["service_type"] = _check_type(service_type, errors)
    if selector is not None:
        fields["selector"] = _check_selector(selector, errors)
    if ports is not None:
        fields["ports"] = _check_ports(ports, errors)
    if errors:
        raise ValidationError(gettext("The service is not valid."), errors=errors)
    with transaction.atomic():
        service = _locked(service)
        if service.deleting:
            raise Conflict(
                gettext("Service %(name)s is being deleted.") % {"name": service.name},
                errors={"phase": [service.phase]},
            )
        changed = {k: v for k, v in fields.items() if getattr(service, k) != v}
        if not changed:
            return service
        service = _write(service, **changed, generation=F("generation") + 1)
        _audit(actor, service, "service.update", changed)
        _event(
            service,
            reason="SpecChanged",
            message=service_texts.SERVICE_SPEC_CHANGED
            % {
                "fields": " and ".join(sorted(_SPEC_WORDS[k] for k in changed)),
                "generation": service.generation,
            },
        )
        _publish(service)
        _sync_later(service.pk)
    return service


def service_delete(*, actor, service: Service) -> Service:
    """Mark the service ``Deleting``; its task removes it from the cluster, then the row."""
    authorize(
        actor=actor,
        tenant=service.tenant,
        permission="service.delete",
        target=f"service/{service.name}",
    )
    with transaction.atomic():
        service = _locked(service)
        if not service.deleting:
            service = _write(
                service,
                phase=ServicePhase.DELETING,
                message="",
                phase_changed=timezone.now(),
                generation=F("generation") + 1,
            )
            _audit(actor, service, "service.delete")
            _event(
                service,
                reason="Deleting",
                message=service_texts.SERVICE_DELETING % {"service": service.name},
            )
            _publish(service)
        _sync_later(service.pk)
    return service


# --- Members ---------------------------------------------------------------------------
def vm_addresses(vm: VirtualMachine) -> list[str]:
    """The IPv4 addresses Isotope knows for the VM's attached interfaces: the
    DHCP leases recorded on each, else its fixed IP (one per interface)."""
    return vms_addresses([vm.pk]).get(vm.pk, [])


def vms_addresses(vm_ids) -> dict[int, list[str]]:
    """``vm_addresses`` of many VMs in one query: ``{vm id: [address, ...]}`` (VMs with
    no address are left out)."""
    found: dict[int, list[str]] = {}
    nics = NetworkInterface.objects.filter(vm__in=list(vm_ids), phase=NicPhase.ATTACHED)
    rows = nics.order_by("vm_id", "created", "id").values_list("vm_id", "addresses", "fixed_ip")
    for vm_id, held, fixed in rows:
        address = str(held[0]).split("/")[0] if held else (str(fixed) if fixed else "")
        if address and address not in found.setdefault(vm_id, []):
            found[vm_id].append(address)
    return {vm_id: addresses for vm_id, addresses in found.items() if addresses}


def _targets(service: Service, named: dict) -> list:
    """The number each of the service's ports reaches on a member whose container
    ports are ``named`` (``{(name, protocol): number}``): a numeric targetPort as it
    is, a named one looked up (``None`` when the member has no such port)."""
    return [
        p["targetPort"]
        if isinstance(p["targetPort"], int)
        else named.get((p["targetPort"], p["protocol"]))
        for p in service.ports
    ]


def _vm_members(service: Service) -> list[dict]:
    """Matching running VMs at each address. A VM has no container ports: it serves a
    named targetPort on none of them, so with only named ports it is no member."""
    targets = _targets(service, {})
    if all(number is None for number in targets):
        return []
    members = []
    vms = VirtualMachine.objects.filter(tenant=service.tenant, phase__in=SERVING_PHASES)
    selected = [vm for vm in vms.order_by("name") if service.selects(vm.labels)]
    addresses = vms_addresses(vm.pk for vm in selected) if selected else {}
    for vm in selected:
        for address in addresses.get(vm.pk, []):
            members.append(
                {
                    "kind": "VirtualMachine",
                    "name": vm.name,
                    "owner": vm.name,
                    "address": address,
                    "ready": vm.ready == ConditionStatus.TRUE,
                    "targetPorts": targets,
                }
            )
    return members


def _pod_members(service: Service, backend) -> list[dict]:
    members = []
    workloads = Workload.objects.filter(
        tenant=service.tenant, cluster=service.cluster, deleting=False
    ).order_by("name")
    for workload in workloads:
        if not service.selects(workload.labels):
            continue
        for pod in backend.pods(service.namespace, workload.name):
            if not pod.ip or pod.terminating or pod.phase != "Running":
                continue
            targets = _targets(service, {(n, proto): num for n, proto, num in pod.ports})
            if all(number is None for number in targets):
                continue  # none of the named ports is on this pod
            members.append(
                {
                    "kind": "Pod",
                    "name": pod.name,
                    "owner": workload.name,
                    "address": pod.ip,
                    "ready": pod.ready,
                    "targetPorts": targets,
                }
            )
    return members


def service_members(service: Service, backend) -> list[dict]:
    """The service's members now: matching running pods (their addresses from the
    cluster) and matching running VMs, pods first, each sorted by name."""
    members = _pod_members(service, backend) + _vm_members(service)
    members = [m for m in members if _ipv4(m["address"])]
    return members[:MAX_ENDPOINTS]


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def load_balancer_spec(service: Service, members: list[dict]) -> LoadBalancerSpec:
    return LoadBalancerSpec(
        tenant=service.tenant.slug,
        namespace=service.namespace,
        name=service.name,
        service_type=service.service_type,
        ports=tuple(
            ServicePort(
                name=p["name"], protocol=p["protocol"], port=p["port"], target_port=p["targetPort"]
            )
            for p in service.ports
        ),
        endpoints=tuple(
            Endpoint(
                kind=m["kind"],
                name=m["name"],
                address=m["address"],
                ready=m["ready"],
                target_ports=tuple(m.get("targetPorts") or ()),
            )
            for m in members
        ),
        portal_uid=str(service.uid),
        endpoints_per_slice=settings.ISOTOPE_ENDPOINTS_PER_SLICE,
    )


def service_sync(service_id: int) -> Service | None:
    """Make the service's cluster objects match its spec and its members now, and
    record what was written (compare-and-set on the generation it was computed from).
    A deleted service's objects are removed and its row dropped. Idempotent; raises
    the backend's errors (the task retries or records them)."""
    from compute.services.clusters import cluster_backend, namespace_ready

    service = Service.objects.select_related("tenant", "cluster").filter(pk=service_id).first()
    if service is None:
        return None
    backend = cluster_backend(service.cluster)
    if service.deleting:
        if backend.load_balancer_delete(service.namespace, service.name):
            from compute.backends.base import TransientBackendError

            raise TransientBackendError(f"Service {service.name} is still on the cluster.")
        _finalize_delete(service)
        return None
    namespace_ready(tenant=service.tenant, cluster=service.cluster)
    members = service_members(service, backend)
    status = backend.load_balancer_apply(load_balancer_spec(service, members))
    return service_synced(service, members, status)


def service_synced(service: Service, members: list[dict], status: LoadBalancerStatus):
    """Record a sync's outcome unless the spec changed since it was read (the newer
    spec's own sync records its own)."""
    with transaction.atomic():
        row = (
            Service.objects.select_for_update(of=("self",))
            .select_related("tenant")
            .filter(pk=service.pk, generation=service.generation)
            .exclude(phase=ServicePhase.DELETING)
            .first()
        )
        if row is None:
            return None
        fields = {
            "endpoints": members,
            "cluster_ip": status.cluster_ip,
            "node_ports": status.node_ports,
            "observed_generation": row.generation,
            "phase": ServicePhase.READY,
            "message": "",
        }
        changed = {k: v for k, v in fields.items() if getattr(row, k) != v}
        if not changed:
            return row
        if "phase" in changed:
            changed["phase_changed"] = timezone.now()
        before = _member_keys(row.endpoints)
        row = _write(row, **changed)
        after = _member_keys(row.endpoints)
        if before != after:
            ready = sum(1 for m in members if m["ready"])
            listed = ", ".join(f"{m['name']} {m['address']}" for m in members)
            _event(
                row,
                reason="EndpointsChanged",
                message=(
                    service_texts.SERVICE_MEMBERS if listed else service_texts.SERVICE_MEMBERS_NONE
                )
                % {"count": len(members), "ready": ready, "members": listed},
            )
        _publish(row)
        return row


def _member_keys(members: list[dict]) -> list[tuple]:
    return [(m["kind"], m["name"], m["address"], m["ready"]) for m in members or []]


def service_fail(service_id: int, message: str) -> None:
    """The cluster refused the service's objects: ``Failed`` with its words."""
    with transaction.atomic():
        row = (
            Service.objects.select_for_update(of=("self",))
            .select_related("tenant")
            .filter(pk=service_id)
            .exclude(phase=ServicePhase.DELETING)
            .first()
        )
        if row is None or (row.phase == ServicePhase.FAILED and row.message == message[:1000]):
            return
        row = _write(
            row, phase=ServicePhase.FAILED, message=message[:1000], phase_changed=timezone.now()
        )
        _event(row, type="Warning", reason="Failed", message=message[:1000])
        _publish(row)


def _finalize_delete(service: Service) -> None:
    with transaction.atomic():
        deleted, _ = Service.objects.filter(pk=service.pk).delete()
        if not deleted:
            return
        _event(
            service,
            reason="Deleted",
            message=service_texts.SERVICE_DELETED % {"service": service.name},
        )
        resource_forget(tenant=service.tenant, kind=EVENT_KIND, name=service.name)


# --- Hooks (members may have changed) --------------------------------------------------
def _member_of(service: Service, kind: str, owner: str) -> bool:
    return any(m["kind"] == kind and m.get("owner") == owner for m in service.endpoints or [])


def vm_changed(vm: VirtualMachine, *, before: dict | None = None) -> list[int]:
    """A VM's phase, readiness, addresses, labels or existence changed: the services
    that select it, list it, or selected its labels ``before`` a relabel sync after the
    caller's commit (a sync that read the old labels may not have recorded the VM yet:
    the old labels, not only the recorded members, say who must drop it). Returns the
    services' ids."""
    queued = []
    # Written out (portal.sql): every VM's start, stop and address change asks, and most
    # tenants have no Service.
    for service in sql.select(Service, "tenant_id = %s", [vm.tenant_id]):
        if (
            service.selects(vm.labels)
            or (before is not None and service.selects(before))
            or _member_of(service, "VirtualMachine", vm.name)
        ):
            _sync_later(service.pk)
            queued.append(service.pk)
    return queued


def workload_changed(workload: Workload, *, before: dict | None = None) -> list[int]:
    """A workload's pods changed (a pod came, went, got an address or changed
    readiness) or its labels did: the services that select it, list its pods, or
    selected its labels ``before`` a relabel sync. Returns the services' ids."""
    queued = []
    for service in Service.objects.filter(
        tenant_id=workload.tenant_id, cluster_id=workload.cluster_id
    ).only("pk", "selector", "endpoints", "phase"):
        if (
            service.selects(workload.labels)
            or (before is not None and service.selects(before))
            or _member_of(service, "Pod", workload.name)
        ):
            _sync_later(service.pk)
            queued.append(service.pk)
    return queued


def _sync_later(service_id: int) -> None:
    def enqueue() -> None:
        from compute.tasks import kubernetes as tasks

        tasks.sync_service_endpoints.delay(service_id)

    transaction.on_commit(enqueue)


# --- Presentation ----------------------------------------------------------------------
def service_state(service: Service) -> dict:
    """What the Services pages need to redraw one service (phase, members, buttons)."""
    return {
        "name": service.name,
        "phase": service.phase,
        "message": service.message,
        "type": service.service_type,
        "clusterIP": service.cluster_ip,
        "nodePorts": service.node_ports,
        "endpoints": list(service.endpoints or []),
        "members": len(service.endpoints or []),
        "readyMembers": sum(1 for m in service.endpoints or [] if m.get("ready")),
        "uid": str(service.uid),
        "resourceVersion": str(service.resource_version),
        "actionsByRole": {
            role: service_actions(service, role) for role in ("viewer", "operator", "admin")
        },
    }


def _publish(service: Service) -> None:
    resource_publish(
        tenant=service.tenant, kind=EVENT_KIND, name=service.name, data=service_state(service)
    )


def _audit(actor, service: Service, action: str, detail: dict | None = None) -> None:
    audit_record(
        actor=actor,
        action=action,
        tenant=service.tenant,
        target=f"service/{service.name}",
        detail=detail or {},
    )


def _event(
    service: Service, *, reason: str, message: str, type: str = "Normal", new_object: bool = False
) -> None:
    """``new_object``: its first event, in the transaction that makes it (see ``event_publish``)."""
    event_publish(
        new_object=new_object,
        tenant=service.tenant,
        kind=EVENT_KIND,
        name=service.name,
        uid=str(service.uid),
        type=type,
        reason=reason,
        message=message[:1000],
    )
