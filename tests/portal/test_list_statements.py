"""Every list (API and page) reads the same number of SQL statements whatever its rows.

A list of a tenant's objects with k and then 2k rows is requested as a member of the
tenant (an API token for the API, a signed-in session for pages) and its statements are
captured: the count must not grow with the rows (no query per row for a related object,
a count, a permission or a deferred field).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from compute.choices import MigrationPhase, Phase, SnapshotPhase, VolumePhase
from compute.models import (
    Image,
    Migration,
    SecurityGroup,
    Service,
    Snapshot,
    VirtualMachine,
    VMPool,
    Volume,
    Workload,
)
from compute.services import autoscalers as autoscaler_services
from compute.services import backups as backup_services
from compute.services import load_balancers as service_services
from compute.services import networks as network_services
from compute.services import pools as pool_services
from compute.services import security_groups as group_services
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from compute.services import workloads as workload_services
from monitoring import notifications
from monitoring.choices import NotificationKind
from monitoring.models import Webhook
from monitoring.services import event_publish
from tenants import services as tenant_services
from tenants.choices import Role
from tenants.models import Quota
from tests.compute.conftest import fake_cluster  # noqa: F401 - fixture
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

K = 3


@pytest.fixture
def world(demo, make_host, tiny_image, fake_cluster, settings, tmp_path):  # noqa: F811
    settings.ISOTOPE_BACKUP_DIR = str(tmp_path / "backups")
    demo.host = make_host("node-a", cpus=64, memory_mib=262144)
    Quota.objects.filter(tenant=demo.acme).update(
        cpu=1000, memory=10**9, storage=10**9, vms=1000, pods=1000, networks=1000
    )
    demo.cluster = fake_cluster
    return demo


# --- Makers: ``make(world, i)`` adds the list's i-th row (with its related objects) -----
def _vm(world, name: str, phase=Phase.RUNNING, **fields) -> VirtualMachine:
    vm = vm_services.vm_create(
        actor=None,
        tenant=world.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=128,
        disk_gib=1,
        labels={"app": "web"},
        **fields,
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=phase)
    Volume.objects.filter(vm=vm).update(phase=VolumePhase.ATTACHED)
    return VirtualMachine.objects.get(pk=vm.pk)


def make_vm(world, i):
    _vm(world, f"vm{i}")


def make_volume(world, i):
    """A VM with its root disk and a second disk, and a Ready volume of its own (every
    other one with a snapshot, which takes its delete button away)."""
    vm = _vm(world, f"vm{i}")
    volume_services.volume_create(actor=None, tenant=world.acme, name=f"disk{i}", size_gib=1, vm=vm)
    data = volume_services.volume_create(actor=None, tenant=world.acme, name=f"data{i}", size_gib=1)
    Volume.objects.filter(pk=data.pk).update(phase=VolumePhase.READY)
    if i % 2:
        snapshot_services.snapshot_create(
            actor=None, volume=Volume.objects.get(pk=data.pk), name="s1"
        )


def make_vm_volume(world, i):
    vm = _the_vm(world)
    volume_services.volume_create(actor=None, tenant=world.acme, name=f"disk{i}", size_gib=1, vm=vm)


def _the_volume(world) -> Volume:
    volume = Volume.objects.filter(tenant=world.acme, name="snapped").first()
    if volume is None:
        volume = volume_services.volume_create(
            actor=None, tenant=world.acme, name="snapped", size_gib=1
        )
        Volume.objects.filter(pk=volume.pk).update(phase=VolumePhase.READY)
        volume = Volume.objects.get(pk=volume.pk)
    return volume


def make_snapshot(world, i):
    snapshot = snapshot_services.snapshot_create(
        actor=None, volume=_the_volume(world), name=f"s{i}"
    )
    Snapshot.objects.filter(pk=snapshot.pk).update(phase=SnapshotPhase.READY)


def _the_vm(world, phase=Phase.STOPPED) -> VirtualMachine:
    vm = VirtualMachine.objects.filter(tenant=world.acme, name="web").first()
    return vm or _vm(world, "web", phase=phase)


def make_vm_snapshot(world, i):
    group = snapshot_services.vm_snapshot_create(actor=None, vm=_the_vm(world), name=f"s{i}")
    Snapshot.objects.filter(pk__in=[s.pk for s in group.disks]).update(phase=SnapshotPhase.READY)


def make_backup(world, i):
    vm = _vm(world, f"vm{i}", phase=Phase.STOPPED)
    group = snapshot_services.vm_snapshot_create(actor=None, vm=vm, name="s1")
    Snapshot.objects.filter(pk__in=[s.pk for s in group.disks]).update(phase=SnapshotPhase.READY)
    backup_services.backup_create(actor=None, vm=vm, snapshot="s1", name=f"b{i}")
    volume = volume_services.volume_create(
        actor=None, tenant=world.acme, name=f"data{i}", size_gib=1
    )
    Volume.objects.filter(pk=volume.pk).update(phase=VolumePhase.READY)
    volume = Volume.objects.get(pk=volume.pk)
    snapshot = snapshot_services.snapshot_create(actor=None, volume=volume, name="s1")
    Snapshot.objects.filter(pk=snapshot.pk).update(phase=SnapshotPhase.READY)
    backup_services.volume_backup_create(actor=None, volume=volume, snapshot="s1", name=f"vb{i}")


def make_network(world, i):
    """A network with 0, 1 or 2 interfaces."""
    network_services.network_create(
        actor=None, tenant=world.acme, name=f"net{i}", cidr=f"10.{i}.0.0/24"
    )
    for j in range(i % 3):
        vm = _vm(world, f"vm{i}-{j}")
        network_services.nic_create(actor=None, vm=vm, network=f"net{i}")


def make_nic(world, i):
    vm = _the_vm(world, phase=Phase.RUNNING)
    network_services.network_create(
        actor=None, tenant=world.acme, name=f"net{i}", cidr=f"10.{i}.0.0/24"
    )
    group_services.group_create(actor=None, tenant=world.acme, name=f"g{i}")
    if i == 0:
        group_services.group_create(actor=None, tenant=world.acme, name="shared")
    network_services.nic_create(
        actor=None, vm=vm, network=f"net{i}", security_groups=[f"g{i}", "shared"]
    )


def make_group(world, i):
    """A group with a rule from anywhere and one to the group before it, and 0, 1 or 2
    interfaces in it."""
    rules = [
        {"direction": "ingress", "protocol": "tcp", "port_min": 80, "remote_cidr": "0.0.0.0/0"},
        {"direction": "egress", "protocol": "any", "remote_group": f"g{max(i - 1, 0)}"},
    ]
    group_services.group_create(actor=None, tenant=world.acme, name=f"g{i}", rules=rules)
    for j in range(i % 3):
        vm = _vm(world, f"vm{i}-{j}")
        network_services.nic_create(actor=None, vm=vm, network="default", security_groups=[f"g{i}"])


def make_service(world, i):
    _vm(world, f"vm{i}")
    _service(world, f"svc{i}")


def _service(world, name: str):
    service_services.service_create(
        actor=None,
        tenant=world.acme,
        name=name,
        selector={"app": "web"},
        ports=[{"name": "http", "port": 80, "targetPort": 8080}],
    )


def make_workload(world, i):
    """A Deployment in a group of its own; every other one sized by an autoscaler (which
    takes its scale action away)."""
    group_services.group_create(actor=None, tenant=world.acme, name=f"g{i}")
    workload = workload_services.workload_create(
        actor=None,
        tenant=world.acme,
        name=f"wl{i}",
        image="nginx:1.27",
        replicas=2,
        security_groups=[f"g{i}"],
    )
    Workload.objects.filter(pk=workload.pk).update(phase=Phase.RUNNING)
    if i % 2:
        autoscaler_services.autoscaler_create(
            actor=None,
            tenant=world.acme,
            workload=Workload.objects.get(pk=workload.pk),
            min_replicas=1,
            max_replicas=3,
            target=60,
        )


def _pool(world, name: str, *, replicas: int) -> VMPool:
    pool = pool_services.pool_create(
        actor=None,
        tenant=world.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=128,
        replicas=replicas,
    )
    return pool_services.pool_reconcile(pool.pk)


def make_pool(world, i):
    """A pool of 0, 1 or 2 members; every other one with an autoscaler."""
    pool = _pool(world, f"pool{i}", replicas=i % 3)
    if i % 2:
        autoscaler_services.autoscaler_create(
            actor=None, tenant=world.acme, pool=pool, min_replicas=0, max_replicas=3, target=60
        )


def make_pool_member(world, i):
    """One more member of the pool "web"."""
    pool = VMPool.objects.filter(tenant=world.acme, name="web").first()
    pool = pool or _pool(world, "web", replicas=0)
    pool = pool_services.pool_scale(actor=None, pool=pool, replicas=i + 1)
    pool_services.pool_reconcile(pool.pk)


def make_rule(world, i):
    """One more rule of the group "web" (every other one naming another group)."""
    group = SecurityGroup.objects.filter(tenant=world.acme, name="web").first()
    if group is None:
        group = group_services.group_create(actor=None, tenant=world.acme, name="web")
        group_services.group_create(actor=None, tenant=world.acme, name="db")
    remote = {"remote_group": "db"} if i % 2 else {"remote_cidr": f"10.{i}.0.0/16"}
    group_services.rule_add(
        actor=None, group=group, direction="ingress", protocol="tcp", port_min=80 + i, **remote
    )


def make_service_member(world, i):
    """One more VM that the Service "web" selects, among its endpoints (as its sync
    writes them: no cluster here)."""
    if i == 0:
        _service(world, "web")
    vm = _vm(world, f"member{i}")
    service = Service.objects.get(tenant=world.acme, name="web")
    member = {"kind": "vm", "name": vm.name, "address": f"10.0.0.{i + 2}", "ready": True}
    service.endpoints = [*(service.endpoints or []), member]
    service.save(update_fields=["endpoints"])


def make_autoscaler(world, i):
    pool = _pool(world, f"pool{i}", replicas=1)
    autoscaler_services.autoscaler_create(
        actor=None, tenant=world.acme, pool=pool, min_replicas=1, max_replicas=3, target=60
    )
    workload = workload_services.workload_create(
        actor=None, tenant=world.acme, name=f"wl{i}", image="nginx:1.27", replicas=1
    )
    autoscaler_services.autoscaler_create(
        actor=None,
        tenant=world.acme,
        workload=workload,
        min_replicas=1,
        max_replicas=3,
        target=60,
    )


def make_image(world, i):
    Image.objects.create(
        tenant=world.acme,
        name=f"img{i}",
        display_name=f"Image {i}",
        kind="kernel",
        kernel_path="/var/lib/isotope/images/test/vmlinux",
        created_by=world.alice,
    )
    Image.objects.create(
        name=f"public{i}",
        display_name=f"Public {i}",
        kind="kernel",
        public=True,
        kernel_path="/var/lib/isotope/images/test/vmlinux",
    )


def make_migration(world, i):
    vm = _vm(world, f"vm{i}")
    Migration.objects.create(
        tenant=world.acme,
        vm=vm,
        vm_name=vm.name,
        source=world.host,
        target=world.host,
        phase=MigrationPhase.PENDING,
        reason="Queued",
        requested_by=world.alice,
    )


def make_event(world, i):
    event_publish(
        tenant=world.acme, kind="vm", name=f"vm{i}", reason="Started", message=f"vm{i} started"
    )


def make_webhook(world, i):
    Webhook.objects.create(
        tenant=world.acme, url=f"https://hooks{i}.example.com/", created_by=world.alice
    )


def make_member(world, i):
    user = get_user_model().objects.create_user(f"user{i}", f"user{i}@example.com", PASSWORD)
    tenant_services.membership_add(actor=None, tenant=world.acme, user=user, role=Role.VIEWER)


def make_token(world, i):
    tenant_services.token_create(user=world.viewer, name=f"token{i}")


def make_notification(world, i):
    notifications.notify(
        users=[world.viewer],
        kind=NotificationKind.values[0],
        title=f"Note {i}",
        tenant=world.acme,
        link="/t/acme/",
    )


def make_quota_request(world, i):
    from usage.services import requests as request_services

    request = request_services.quota_request_create(
        actor=world.alice, tenant=world.acme, increase={"vms": 1}, reason=f"more {i}"
    )
    request_services.quota_request_decide(actor=world.admin, request=request, approve=True)


def make_tenant(world, i):
    tenant = tenant_services.tenant_create(actor=None, slug=f"t{i}", name=f"Tenant {i}")
    tenant_services.membership_add(actor=None, tenant=tenant, user=world.alice, role=Role.ADMIN)


# --- The lists -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Listing:
    name: str
    url: str
    make: Callable
    page: bool = False


API = "/api/v1/tenants/acme"
LISTS = [
    Listing("vms", f"{API}/virtualmachines/", make_vm),
    Listing("volumes", f"{API}/volumes/", make_volume),
    Listing("snapshots", f"{API}/volumes/snapped/snapshots/", make_snapshot),
    Listing("vm-snapshots", f"{API}/virtualmachines/web/snapshots/", make_vm_snapshot),
    Listing("backups", f"{API}/backups/", make_backup),
    Listing("networks", f"{API}/networks/", make_network),
    Listing("nics", f"{API}/virtualmachines/web/nics/", make_nic),
    Listing("securitygroups", f"{API}/securitygroups/", make_group),
    Listing("services", f"{API}/services/", make_service),
    Listing("workloads", f"{API}/workloads/", make_workload),
    Listing("vmpools", f"{API}/vmpools/", make_pool),
    Listing("autoscalers", f"{API}/autoscalers/", make_autoscaler),
    Listing("images", f"{API}/images/", make_image),
    Listing("migrations", f"{API}/migrations/", make_migration),
    Listing("events", f"{API}/events/", make_event),
    Listing("members", f"{API}/members/", make_member),
    Listing("quota-requests", f"{API}/quota/requests/", make_quota_request),
    Listing("usage", f"{API}/usage/", make_vm),
    Listing("tenants", "/api/v1/tenants/", make_tenant),
    # Pages (the VM page lists its volumes, interfaces and snapshots)
    Listing("vm-page", "/t/acme/vms/", make_vm, page=True),
    Listing("volume-page", "/t/acme/volumes/", make_volume, page=True),
    Listing("volume-detail-page", "/t/acme/volumes/snapped/", make_snapshot, page=True),
    Listing("vm-detail-page-snapshots", "/t/acme/vms/web/", make_vm_snapshot, page=True),
    Listing("vm-detail-page-volumes", "/t/acme/vms/web/", make_vm_volume, page=True),
    Listing("vm-detail-page-nics", "/t/acme/vms/web/", make_nic, page=True),
    Listing("backup-page", "/t/acme/backups/", make_backup, page=True),
    Listing("network-page", "/t/acme/networks/", make_network, page=True),
    Listing("securitygroup-page", "/t/acme/securitygroups/", make_group, page=True),
    Listing("securitygroup-detail-page", "/t/acme/securitygroups/web/", make_rule, page=True),
    Listing("service-page", "/t/acme/services/", make_service, page=True),
    Listing("service-detail-page", "/t/acme/services/web/", make_service_member, page=True),
    Listing("workload-page", "/t/acme/workloads/", make_workload, page=True),
    Listing("vmpool-page", "/t/acme/vmpools/", make_pool, page=True),
    Listing("vmpool-detail-page", "/t/acme/vmpools/web/", make_pool_member, page=True),
    Listing("autoscaler-page", "/t/acme/autoscalers/", make_autoscaler, page=True),
    Listing("image-page", "/t/acme/images/", make_image, page=True),
    Listing("migration-page", "/staff/migrations/", make_migration, page=True),
    Listing("event-page", "/t/acme/events/", make_event, page=True),
    Listing("webhook-page", "/t/acme/webhooks/", make_webhook, page=True),
    Listing("member-page", "/t/acme/members/", make_member, page=True),
    Listing("overview-page", "/t/acme/", make_member, page=True),
    Listing("token-page", "/profile/", make_token, page=True),
    Listing("notification-page", "/notifications/", make_notification, page=True),
    Listing("usage-page", "/t/acme/usage/", make_vm, page=True),
]


def _client(user, listing: Listing) -> Client:
    if listing.page:
        client = Client()
        client.force_login(user)
        return client
    _, key = tenant_services.token_create(user=user, name="lists")
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


def _statements(client: Client, url: str) -> tuple[list[str], bytes]:
    client.get(url)  # caches and sessions warm
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:2000]
    return [q["sql"] for q in captured], response.content


def _shape(sql: str) -> str:
    return re.sub(r"\d+", "N", sql)[:160]


# Each list as a tenant admin (every action shown) and as platform staff (hosts too);
# staff pages as staff only.
CASES = [
    pytest.param(listing, who, id=f"{listing.name}-{who}")
    for listing in LISTS
    for who in (("staff",) if listing.url.startswith("/staff/") else ("member", "staff"))
]


@pytest.mark.parametrize(("listing", "who"), CASES)
def test_the_lists_statements_do_not_grow_with_its_rows(world, listing, who):
    world.viewer = world.admin if who == "staff" else world.alice
    client = _client(world.viewer, listing)
    for i in range(K):
        listing.make(world, i)
    few, shown = _statements(client, listing.url)
    for i in range(K, 2 * K):
        listing.make(world, i)
    many, shown_more = _statements(client, listing.url)
    assert len(shown_more) > len(shown), "the rows added are not on the list"
    extra = Counter(map(_shape, many)) - Counter(map(_shape, few))
    assert len(many) == len(few), (
        f"{listing.name}: {len(few)} statements with {K} rows, {len(many)} with {2 * K}; "
        f"more of: {dict(extra)}"
    )


# --- Paged pages: every page of a list reads the same statements ------------------------
PAGED = {
    "volume-page": "/t/acme/volumes/",
    "workload-page": "/t/acme/workloads/",
    "backup-page": "/t/acme/backups/",
}


@pytest.mark.parametrize("name", PAGED)
def test_every_page_of_a_paged_list_reads_as_many_statements(world, name):
    from tests.compute.test_paged_lists import seed_backups, seed_volumes, seed_workloads

    seed_volumes(world.acme, 60)
    seed_workloads(world.acme, world.cluster, 60)
    seed_backups(world.acme, 60)
    client = _client(world.alice, Listing(name, PAGED[name], make_vm, page=True))
    # Without a search (the count known from the phase counts, or the window count) and
    # with one that every row matches, pages 1 to 3 of 25.
    for search in ("", "q=-0&"):
        counts = []
        for page in (1, 2, 3):
            statements, body = _statements(client, f"{PAGED[name]}?{search}per_page=25&page={page}")
            kind = name.removesuffix("-page").encode()
            shown = body.split(b"<template")[0].count(b'<tr data-live-kind="' + kind + b'"')
            assert shown == (25 if page < 3 else 10), f"page {page} shows {shown} rows"
            counts.append(len(statements))
        assert counts == [counts[0]] * 3, f"{name} ?{search}: {counts}"
