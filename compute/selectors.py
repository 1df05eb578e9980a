"""Reads for compute. Tenant isolation goes through ``tenants.selectors.restrict``.

A VM of another tenant, or of a tenant the user is not a member of, does not exist for
the caller (``NotFound``); a member whose role lacks the action gets ``PermissionDenied``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import (
    Case,
    Count,
    Exists,
    Func,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.utils.translation import gettext, gettext_noop

from compute.choices import ImagePhase, Phase
from compute.models import (
    Flavor,
    Host,
    Image,
    Network,
    NetworkInterface,
    SecurityGroup,
    Service,
    Snapshot,
    VirtualMachine,
    Volume,
    Workload,
)
from portal.exceptions import NotFound, PermissionDenied
from tenants.models import Tenant
from tenants.selectors import can, restrict, role_of

# What ``_tenant_object`` says when the user cannot see the object (translated then).
VM_NOT_FOUND = gettext_noop("Virtual machine %(name)s not found in %(tenant)s.")
WORKLOAD_NOT_FOUND = gettext_noop("Workload %(name)s not found in %(tenant)s.")
VOLUME_NOT_FOUND = gettext_noop("Volume %(name)s not found in %(tenant)s.")
BACKUP_NOT_FOUND = gettext_noop("Backup %(name)s not found in %(tenant)s.")
POOL_NOT_FOUND = gettext_noop("VM pool %(name)s not found in %(tenant)s.")
AUTOSCALER_NOT_FOUND = gettext_noop("Autoscaler %(name)s not found in %(tenant)s.")


def vms_for_tenant(user, tenant: Tenant, action: str = "vm.view") -> QuerySet[VirtualMachine]:
    """The tenant's VMs that ``user`` may ``action`` (none for non-members), by name."""
    return (
        restrict(user, action, VirtualMachine.objects.filter(tenant=tenant))
        .select_related("tenant", "image", "host")
        .prefetch_related("volumes")  # the root disk's volume, shown with each VM
        .order_by("name")
    )


def vm_list_rows(user, tenant: Tenant) -> QuerySet[VirtualMachine]:
    """``vms_for_tenant`` as the VM list page draws its rows: the image and the host
    joined; not the tenant (the page has it: ``tenant_rows``) nor the volumes (the list
    shows none). Their prefetch and the tenant's copy in every row were a fifth of a
    50-row page's CPU (bench/pages.py)."""
    return (
        vms_for_tenant(user, tenant)
        .select_related(None)
        .prefetch_related(None)
        .select_related("image", "host")
    )


def tenant_rows(rows: list, tenant: Tenant) -> list:
    """``rows`` (fetched without their tenant) with ``tenant`` set on each, so reading
    ``row.tenant`` costs no query."""
    for row in rows:
        row.tenant = tenant
    return rows


def host_names() -> list[str]:
    """Every libvirt host's name (the staff's host filter on lists)."""
    return list(Host.objects.order_by("name").values_list("name", flat=True))


def vm_get(
    user, tenant: Tenant, name: str, action: str = "vm.view", *, lock: bool = False
) -> VirtualMachine:
    """The VM ``name`` of ``tenant``: ``NotFound`` when the user cannot see it,
    ``PermissionDenied`` when the user's role does not allow ``action``.

    With ``lock`` the VM row (only) is locked until the caller's transaction ends, so an
    ``If-Match`` check and the change it guards see the same version.
    """
    queryset = vms_for_tenant(user, tenant).filter(name=name)
    return _tenant_object(queryset, user, tenant, action, "vm.view", VM_NOT_FOUND, name, lock)


def images_for_tenant(tenant: Tenant) -> QuerySet[Image]:
    """The images a VM of ``tenant`` can start from: public and the tenant's own, Ready."""
    return Image.objects.filter(Q(public=True) | Q(tenant=tenant), phase=ImagePhase.READY).order_by(
        "name"
    )


def images_visible(user, tenant: Tenant) -> QuerySet[Image]:
    """The Images page and API list: the tenant's own images in every phase (none for
    users who may not view the tenant) and the public Ready ones, the tenant's first."""
    own = restrict(user, "image.view", Image.objects.filter(tenant=tenant))
    public = Image.objects.filter(public=True, phase=ImagePhase.READY).exclude(tenant=tenant)
    if not can(user, tenant, "image.view"):
        return Image.objects.none()
    return (
        (own | public)
        .select_related("tenant")
        .annotate(foreign=Case(When(tenant=tenant, then=0), default=1))
        .order_by("foreign", "name", "pk")
    )


def image_get(user, tenant: Tenant, name: str, *, own: bool = False, lock: bool = False) -> Image:
    """An image by name: the tenant's own first, else a public one (``own`` only the
    tenant's, e.g. to delete or upload). ``NotFound`` when the user cannot see it;
    ``lock`` locks the row until the caller's transaction ends."""
    queryset = restrict(user, "image.view", Image.objects.filter(tenant=tenant, name=name))
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    image = queryset.select_related("tenant").first()
    if image is None and not own and can(user, tenant, "image.view"):
        image = (
            Image.objects.filter(name=name, public=True, phase=ImagePhase.READY)
            .select_related("tenant")
            .order_by("tenant_id")
            .first()
        )
    if image is None:
        raise NotFound(
            gettext("Image %(name)s not found in %(tenant)s.")
            % {"name": repr(name), "tenant": tenant.slug}
        )
    return image


def flavors() -> QuerySet[Flavor]:
    return Flavor.objects.all()


@dataclass(frozen=True)
class PhaseCount:
    phase: str
    count: int


def vm_phase_counts(user, tenant: Tenant) -> list[PhaseCount]:
    """How many of the tenant's VMs are in each phase, in lifecycle order, non-zero only."""
    rows = dict(
        vms_for_tenant(user, tenant)
        .order_by()
        .values_list("phase")
        .annotate(n=Count("id"))
        .values_list("phase", "n")
    )
    return [PhaseCount(phase, rows[phase]) for phase in Phase.values if rows.get(phase)]


# --- Workloads -------------------------------------------------------------------------
def workloads_for_tenant(user, tenant: Tenant, action: str = "workload.view"):
    """The tenant's container workloads that ``user`` may ``action``, by name."""
    from compute.models import Workload

    return (
        restrict(user, action, Workload.objects.filter(tenant=tenant))
        .select_related("tenant", "cluster")
        .prefetch_related("security_groups")
        .order_by("name")
    )


def workload_list_rows(user, tenant: Tenant) -> QuerySet[Workload]:
    """``workloads_for_tenant`` as the workload lists (API and page) show them: whether
    an autoscaler sizes each (no scale action then) is read in the list's statement."""
    return with_has_autoscaler(workloads_for_tenant(user, tenant))


def with_has_autoscaler(workloads: QuerySet[Workload]) -> QuerySet[Workload]:
    """``workloads`` with ``has_autoscaler`` (whether an autoscaler targets each) read in
    their statement, for ``workloads.has_autoscaler`` instead of a query per row."""
    from compute.models import Autoscaler

    return workloads.annotate(
        has_autoscaler=Exists(Autoscaler.objects.filter(workload=OuterRef("pk")))
    )


def workload_get(user, tenant: Tenant, name: str, action: str = "workload.view", *, lock=False):
    """The workload ``name`` of ``tenant``: ``NotFound`` when the user cannot see it,
    ``PermissionDenied`` when the role does not allow ``action``; ``lock`` as vm_get."""
    queryset = workloads_for_tenant(user, tenant).filter(name=name)
    return _tenant_object(
        queryset, user, tenant, action, "workload.view", WORKLOAD_NOT_FOUND, name, lock
    )


def workload_phase_counts(user, tenant: Tenant) -> list[PhaseCount]:
    """How many of the tenant's workloads are in each phase (non-zero, lifecycle order)."""
    rows = dict(
        workloads_for_tenant(user, tenant)
        .order_by()
        .values_list("phase")
        .annotate(n=Count("id"))
        .values_list("phase", "n")
    )
    return [PhaseCount(phase, rows[phase]) for phase in Phase.values if rows.get(phase)]


def workload_pod_totals(user, tenant: Tenant) -> dict:
    """Desired and ready pods over the tenant's workloads (overview and dashboard)."""
    from django.db.models import Sum

    totals = workloads_for_tenant(user, tenant).aggregate(
        replicas=Sum("replicas"), ready=Sum("ready_replicas")
    )
    return {"replicas": totals["replicas"] or 0, "ready": totals["ready"] or 0}


def migrations_for_tenant(user, tenant: Tenant, *, vm_name: str = ""):
    """The tenant's live migrations ``user`` may view (newest first)."""
    from compute.models import Migration

    queryset = restrict(user, "migration.view", Migration.objects.filter(tenant=tenant))
    if vm_name:
        queryset = queryset.filter(vm_name=vm_name)
    return queryset.select_related("tenant", "source", "target", "requested_by").order_by(
        "-created", "-pk"
    )


def migration_get(user, tenant: Tenant, uid: str):
    """One migration of ``tenant`` by uid (``NotFound`` when the user cannot see it)."""
    import uuid

    try:
        key = uuid.UUID(str(uid))
    except ValueError:
        raise NotFound(gettext("No such migration.")) from None
    migration = migrations_for_tenant(user, tenant).filter(uid=key).first()
    if migration is None:
        raise NotFound(gettext("No such migration."))
    return migration


# --- Volumes ---------------------------------------------------------------------------
def volumes_for_tenant(user, tenant: Tenant, action: str = "volume.view") -> QuerySet[Volume]:
    """The tenant's volumes that ``user`` may ``action``, by name."""
    return (
        restrict(user, action, Volume.objects.filter(tenant=tenant))
        .select_related("tenant", "vm", "host", "source_image", "cluster")
        .order_by("name")
    )


def volume_list_rows(user, tenant: Tenant) -> QuerySet[Volume]:
    """``volumes_for_tenant`` as the volume lists (API and page) show them: whether each
    volume has snapshots (a volume with snapshots offers no delete) is read in the same
    statement (``has_snapshots``) instead of once per row."""
    return volumes_for_tenant(user, tenant).annotate(
        has_snapshots=Exists(Snapshot.objects.filter(volume=OuterRef("pk")))
    )


def volume_get(
    user, tenant: Tenant, name: str, action: str = "volume.view", *, lock: bool = False
) -> Volume:
    """The volume ``name`` of ``tenant``: ``NotFound`` when the user cannot see it,
    ``PermissionDenied`` when the role does not allow ``action``; ``lock`` as vm_get."""
    queryset = volumes_for_tenant(user, tenant).filter(name=name)
    return _tenant_object(
        queryset, user, tenant, action, "volume.view", VOLUME_NOT_FOUND, name, lock
    )


def vm_volumes(user, tenant: Tenant, vm: VirtualMachine) -> QuerySet[Volume]:
    """The volumes attached (or being attached) to ``vm``, root disk first."""
    return volumes_for_tenant(user, tenant).filter(vm=vm).order_by("device")


def attachable_volumes(user, tenant: Tenant, vm: VirtualMachine) -> QuerySet[Volume]:
    """Ready, unattached local volumes on ``vm``'s host: what the VM page offers."""
    from compute.choices import StorageClass, VolumePhase

    return volumes_for_tenant(user, tenant).filter(
        vm__isnull=True,
        phase=VolumePhase.READY,
        storage_class=StorageClass.LOCAL,
        host_id=vm.host_id,
    )


def volume_phase_counts(user, tenant: Tenant) -> list[PhaseCount]:
    """How many of the tenant's volumes are in each phase (non-zero, lifecycle order)."""
    from compute.choices import VolumePhase

    rows = dict(
        volumes_for_tenant(user, tenant)
        .order_by()
        .values_list("phase")
        .annotate(n=Count("id"))
        .values_list("phase", "n")
    )
    return [PhaseCount(phase, rows[phase]) for phase in VolumePhase.values if rows.get(phase)]


def snapshots_for_volume(user, volume: Volume) -> QuerySet[Snapshot]:
    """The snapshots of ``volume`` (which the caller got through :func:`volume_get`,
    so the tenant check is done), newest first."""
    return (
        restrict(user, "volume.view", Snapshot.objects.filter(volume=volume))
        .select_related("tenant", "volume", "volume__tenant", "host")
        .order_by("-created", "name")
    )


def vm_disk_snapshots(user, tenant: Tenant, vm: VirtualMachine) -> QuerySet[Snapshot]:
    """Snapshots of ``vm``'s current disks taken on their own (not as part of one of
    ``vm``'s snapshots), newest first: what the VM page lists beside its VM snapshots."""
    return (
        restrict(user, "volume.view", Snapshot.objects.filter(tenant=tenant, volume__vm=vm))
        .exclude(vm=vm)
        .select_related("tenant", "volume", "volume__tenant")
        .order_by("-created", "volume__device", "name")
    )


def snapshot_get(user, volume: Volume, name: str, *, lock: bool = False) -> Snapshot:
    """The snapshot ``name`` of ``volume``: ``NotFound`` when there is none."""
    queryset = snapshots_for_volume(user, volume).filter(name=name)
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    snapshot = queryset.first()
    if snapshot is None:
        raise NotFound(
            gettext("Snapshot %(name)s of volume %(volume)s not found.")
            % {"name": repr(name), "volume": repr(volume.name)}
        )
    return snapshot


def backups_for_tenant(user, tenant: Tenant):
    """The tenant's backups ``user`` may see, newest first."""
    from compute.models import Backup

    return (
        restrict(user, "backup.view", Backup.objects.filter(tenant=tenant))
        .select_related("tenant", "vm")
        .order_by("-created", "name")
    )


def backup_get(user, tenant: Tenant, name: str, action: str = "backup.view", *, lock=False):
    """The backup ``name`` of ``tenant`` (``NotFound``/``PermissionDenied`` as vm_get)."""
    queryset = backups_for_tenant(user, tenant).filter(name=name)
    return _tenant_object(
        queryset, user, tenant, action, "backup.view", BACKUP_NOT_FOUND, name, lock
    )


# --- Global search (the top bar) --------------------------------------------------------
SEARCH_MAX_LENGTH = 200
SEARCH_LIMIT = 25


@dataclass(frozen=True)
class SearchResults:
    """What the top bar's search found, per kind, each list at most ``SEARCH_LIMIT`` long
    (``more`` names the kinds that had more)."""

    q: str
    vms: list
    workloads: list
    volumes: list
    images: list
    more: frozenset[str]

    @property
    def total(self) -> int:
        return len(self.vms) + len(self.workloads) + len(self.volumes) + len(self.images)


def _labelled(q: str) -> Q:
    """``key=value`` matches that label; a bare word matches names and label keys."""
    key, equals, value = q.partition("=")
    if equals and key.strip():
        return Q(labels__contains={key.strip(): value.strip()})
    return Q(name__icontains=q) | Q(labels__has_key=q)


def search(user, q: str, *, limit: int = SEARCH_LIMIT) -> SearchResults:
    """VMs, workloads, volumes and images of the tenants ``user`` may view, whose name
    contains ``q`` (case-insensitive) or whose labels match it (``key`` or ``key=value``;
    images have no labels but a display name). Isolation is ``restrict``'s, per kind and
    action, as for every list: another tenant's objects are never found."""
    q = q.strip()[:SEARCH_MAX_LENGTH]
    if not q:
        return SearchResults(q="", vms=[], workloads=[], volumes=[], images=[], more=frozenset())
    found = {
        "vms": restrict(user, "vm.view", VirtualMachine.objects.filter(_labelled(q))),
        "workloads": restrict(user, "workload.view", Workload.objects.filter(_labelled(q))),
        "volumes": restrict(user, "volume.view", Volume.objects.filter(_labelled(q))),
        "images": restrict(
            user,
            "image.view",
            Image.objects.filter(Q(name__icontains=q) | Q(display_name__icontains=q)),
        ),
    }
    lists = {
        kind: list(
            qs.select_related("tenant").distinct().order_by("tenant__slug", "name")[: limit + 1]
        )
        for kind, qs in found.items()
    }
    return SearchResults(
        q=q,
        more=frozenset(kind for kind, items in lists.items() if len(items) > limit),
        **{kind: items[:limit] for kind, items in lists.items()},
    )


# --- Networks --------------------------------------------------------------------------
def networks_for_tenant(user, tenant: Tenant) -> QuerySet[Network]:
    """The tenant's networks that ``user`` may see, by name."""
    return (
        restrict(user, "network.view", Network.objects.filter(tenant=tenant))
        .select_related("tenant")
        .order_by("name")
    )


def network_list_rows(user, tenant: Tenant) -> QuerySet[Network]:
    """``networks_for_tenant`` as the network lists (API and page) show them: with how
    many interfaces each has (``interface_count``), counted in the list's statement."""
    return networks_for_tenant(user, tenant).annotate(
        interface_count=row_count(NetworkInterface.objects.filter(network=OuterRef("pk")))
    )


def row_count(queryset: QuerySet) -> Subquery:
    """How many rows ``queryset`` (filtered on an ``OuterRef``) has, as an annotation: a
    correlated ``SELECT COUNT(*)``, 0 when none. Unlike ``Count`` over a join it is not
    multiplied by the list's other joins (``restrict``'s memberships) and needs no
    GROUP BY over the list's columns."""
    return Subquery(
        queryset.order_by().annotate(n=Func(Value(1), function="COUNT")).values("n")[:1],
        output_field=IntegerField(),
    )


def network_get(user, tenant: Tenant, name: str, *, lock: bool = False) -> Network:
    """The network ``name`` of ``tenant``: ``NotFound`` when the user cannot see it."""
    queryset = restrict(user, "network.view", Network.objects.filter(tenant=tenant, name=name))
    queryset = queryset.select_related("tenant")
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    network = queryset.first()
    if network is None:
        raise NotFound(
            gettext("Network %(name)s not found in %(tenant)s.")
            % {"name": repr(name), "tenant": tenant.slug}
        )
    return network


def security_groups_for_tenant(user, tenant: Tenant) -> QuerySet[SecurityGroup]:
    """The tenant's security groups that ``user`` may see, by name, with their rules."""
    return (
        restrict(user, "securitygroup.view", SecurityGroup.objects.filter(tenant=tenant))
        .select_related("tenant")
        .prefetch_related("rules__remote_group")
        .annotate(member_count=Count("nics", distinct=True))
        .order_by("name")
    )


def security_group_get(user, tenant: Tenant, name: str, *, lock: bool = False) -> SecurityGroup:
    """The group ``name`` of ``tenant``: ``NotFound`` when the user cannot see it."""
    queryset = restrict(
        user, "securitygroup.view", SecurityGroup.objects.filter(tenant=tenant, name=name)
    ).select_related("tenant")
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    group = queryset.first()
    if group is None:
        raise NotFound(
            gettext("Security group %(name)s not found in %(tenant)s.")
            % {"name": repr(name), "tenant": tenant.slug}
        )
    return group


def services_for_tenant(user, tenant: Tenant) -> QuerySet[Service]:
    """The tenant's Services that ``user`` may see, by name."""
    return (
        restrict(user, "service.view", Service.objects.filter(tenant=tenant))
        .select_related("tenant")
        .order_by("name")
    )


def service_get(user, tenant: Tenant, name: str, *, lock: bool = False) -> Service:
    """The Service ``name`` of ``tenant``: ``NotFound`` when the user cannot see it."""
    queryset = restrict(
        user, "service.view", Service.objects.filter(tenant=tenant, name=name)
    ).select_related("tenant", "cluster")
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    service = queryset.first()
    if service is None:
        raise NotFound(
            gettext("Service %(name)s not found in %(tenant)s.")
            % {"name": repr(name), "tenant": tenant.slug}
        )
    return service


def vm_nics(user, vm: VirtualMachine) -> QuerySet[NetworkInterface]:
    """The interfaces of ``vm`` (which the caller got through :func:`vm_get`)."""
    return (
        restrict(user, "vm.view", NetworkInterface.objects.filter(vm=vm))
        .select_related("tenant", "vm", "vm__tenant", "network")
        .order_by("created", "id")
    )


def vm_nic_rows(user, vm: VirtualMachine) -> QuerySet[NetworkInterface]:
    """``vm_nics`` as the interface lists (API and the VM page) show them: with their
    security groups (one read for the page, not one per interface)."""
    return vm_nics(user, vm).prefetch_related("security_groups")


def nic_get(user, vm: VirtualMachine, name: str, *, lock: bool = False) -> NetworkInterface:
    queryset = vm_nics(user, vm).filter(name=name)
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    nic = queryset.first()
    if nic is None:
        raise NotFound(
            gettext("Interface %(name)s of %(vm)s not found.")
            % {"name": repr(name), "vm": repr(vm.name)}
        )
    return nic


def pools_for_tenant(user, tenant: Tenant, action: str = "vmpool.view"):
    """The tenant's VM pools that ``user`` may ``action``, by name, with their
    autoscaler."""
    from compute.models import VMPool

    return (
        restrict(user, action, VMPool.objects.filter(tenant=tenant))
        .select_related("tenant", "image", "autoscaler")
        .order_by("name")
    )


def pool_list_rows(user, tenant: Tenant):
    """``pools_for_tenant`` as the pool API lists them: with their members (the fields
    the pool's status shows, oldest first) in one read for the page, as ``member_rows``,
    instead of one read per pool."""
    members = VirtualMachine.objects.only(*POOL_MEMBER_FIELDS).order_by("pk")
    return pools_for_tenant(user, tenant).prefetch_related(
        Prefetch("members", queryset=members, to_attr="member_rows")
    )


# What a pool's status shows of each member (``pool_services.pool_state``).
POOL_MEMBER_FIELDS = ("pool_id", "name", "phase", "ready", "pool_warm", "pool_template")


def pool_members(pool) -> QuerySet[VirtualMachine]:
    """A pool's members (oldest first; those being deleted too)."""
    return VirtualMachine.objects.filter(pool=pool).select_related("tenant").order_by("pk")


def _tenant_object(
    queryset, user, tenant: Tenant, action: str, view: str, not_found: str, name: str, lock: bool
):
    """One object of a restricted ``queryset``: ``NotFound`` (the ``not_found`` format,
    translated) when the user cannot see it, ``PermissionDenied`` when the role does not
    allow ``action``; ``lock`` locks its row (only) until the caller's transaction ends."""
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    obj = queryset.first()
    if obj is None:
        raise NotFound(gettext(not_found) % {"name": repr(name), "tenant": tenant.slug})
    if action != view and not can(user, tenant, action):
        raise PermissionDenied(
            gettext("Your role (%(role)s) does not allow %(permission)s in %(tenant)s.")
            % {"role": role_of(user, tenant), "permission": action, "tenant": tenant.slug}
        )
    return obj


def pool_get(user, tenant: Tenant, name: str, action: str = "vmpool.view", *, lock=False):
    """The VM pool ``name`` of ``tenant`` (``NotFound``/``PermissionDenied`` as vm_get)."""
    queryset = pools_for_tenant(user, tenant).filter(name=name)
    return _tenant_object(queryset, user, tenant, action, "vmpool.view", POOL_NOT_FOUND, name, lock)


def autoscalers_for_tenant(user, tenant: Tenant):
    """The tenant's autoscalers ``user`` may see (members who may view pools), by name."""
    from compute.models import Autoscaler

    return (
        restrict(user, "vmpool.view", Autoscaler.objects.filter(tenant=tenant))
        .select_related("tenant", "pool", "workload")
        .order_by("name")
    )


@dataclass(frozen=True)
class AutoscalerTarget:
    """Something an autoscaler can scale, for the create form's picker: ``kind``
    (``VMPool`` or ``Deployment``, as the API's ``scaleTargetRef``), its name and the
    name of the autoscaler it has already ("" when none)."""

    kind: str
    name: str
    autoscaler: str

    @property
    def value(self) -> str:
        return f"{self.kind}/{self.name}"


def autoscaler_targets(user, tenant: Tenant) -> list[AutoscalerTarget]:
    """The tenant's VM pools, then its Deployments (each by name), that ``user`` may see
    and that are not being deleted, with the autoscaler each has already."""
    from compute.choices import WorkloadKind

    pools = (
        pools_for_tenant(user, tenant)
        .filter(deleting=False)
        .values_list("name", "autoscaler__name")
    )
    deployments = (
        workloads_for_tenant(user, tenant)
        .filter(kind=WorkloadKind.DEPLOYMENT, deleting=False)
        .prefetch_related(None)
        .values_list("name", "autoscaler__name")
    )
    return [
        *(AutoscalerTarget("VMPool", name, scaler or "") for name, scaler in pools),
        *(AutoscalerTarget("Deployment", name, scaler or "") for name, scaler in deployments),
    ]


def autoscaler_get(
    user, tenant: Tenant, name: str, action: str = "vmpool.view", *, lock: bool = False
):
    """The autoscaler ``name`` of ``tenant`` (``NotFound``/``PermissionDenied``)."""
    queryset = autoscalers_for_tenant(user, tenant).filter(name=name)
    return _tenant_object(
        queryset, user, tenant, action, "vmpool.view", AUTOSCALER_NOT_FOUND, name, lock
    )
