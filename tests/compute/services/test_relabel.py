"""Changing a VM's or a workload's labels after it was created (``vm_relabel``, also
``vm_update(labels=)``; ``workload_relabel``). A VM's:
the whole map is replaced in any phase, checked as at create (bad labels change nothing),
with a new resource version, an audit row and an event on the VM's timeline. The
Services it matched before drop it and the ones it matches now list it; a Service that
selected its old labels is synced even when no sync has recorded the VM yet. A
workload's: a new generation whose manifests carry them (a Deployment's pod template,
the selector unchanged; a Pod's own labels), refused while it is deleted."""

from __future__ import annotations

import pytest
from django.utils import translation

from compute.backends.containers import LoadBalancerStatus
from compute.backends.kubernetes import manifests
from compute.choices import Phase
from compute.models import VirtualMachine, Workload
from compute.services import load_balancers as service_services
from compute.services import vms as vm_services
from compute.services import workloads as workload_services
from monitoring.models import Event
from portal import texts
from portal.exceptions import Conflict, PermissionDenied, ValidationError
from tenants.models import AuditLog
from tests.compute.services.test_load_balancers import labelled_vm, make_service_named
from tests.compute.test_api_volumes import make_vm

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]


@pytest.fixture
def world(demo, make_host, tiny_image, fake_cluster):
    demo.host = make_host("node-a")
    return demo


def fresh(vm) -> VirtualMachine:
    return VirtualMachine.objects.get(pk=vm.pk)


@pytest.mark.parametrize("phase", [Phase.RUNNING, Phase.STOPPED, Phase.PENDING, Phase.FAILED])
def test_labels_change_in_any_phase_with_a_new_version_an_audit_row_and_an_event(world, phase):
    vm = make_vm(world, phase=phase)
    version = vm.resource_version

    changed = vm_services.vm_relabel(
        actor=world.bob, vm=vm, labels={"app": "web", "example.com/tier": "front"}
    )

    row = fresh(vm)
    assert row.labels == {"app": "web", "example.com/tier": "front"} == changed.labels
    assert row.resource_version == version + 1 == changed.resource_version
    assert row.phase == phase  # only the labels changed
    audit = AuditLog.objects.get(action="vm.relabel", target="vm/web1")
    assert audit.actor == world.bob
    assert audit.detail == {"from": {}, "to": {"app": "web", "example.com/tier": "front"}}
    event = Event.objects.get(name="web1", reason="Relabelled")
    assert event.message == "Labels changed to app=web, example.com/tier=front by bob."
    with translation.override("zh-hans"):
        assert texts.localize(event.message) == ("bob 将标签改为 app=web, example.com/tier=front。")

    vm_services.vm_update(actor=world.bob, vm=row, labels={})
    assert fresh(vm).labels == {} and fresh(vm).resource_version == version + 2
    assert Event.objects.filter(reason="Relabelled", message="Labels removed by bob.").exists()


def test_the_same_labels_again_write_nothing(world):
    vm = make_vm(world)
    vm = vm_services.vm_relabel(actor=world.bob, vm=vm, labels={"app": "web"})
    again = vm_services.vm_relabel(actor=world.bob, vm=vm, labels={"app": "web"})
    assert again.resource_version == fresh(vm).resource_version == vm.resource_version
    assert AuditLog.objects.filter(action="vm.relabel").count() == 1


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        ({"bad key": "x"}, "Invalid key 'bad key'"),
        ({"app": "-web"}, "Invalid value for 'app'"),
        ({"Example.com/app": "web"}, "DNS subdomain"),
        ({f"k{n}": "v" for n in range(65)}, "At most 64 entries."),
        ({"app": 5}, "A map of strings."),
        (["app=web"], "A map of strings."),
        (None, "A map of strings."),
    ],
)
def test_bad_labels_are_refused_and_nothing_changes(world, labels, words):
    vm = make_vm(world)
    vm = vm_services.vm_relabel(actor=world.bob, vm=vm, labels={"app": "web"})
    with pytest.raises(ValidationError) as refused:
        vm_services.vm_relabel(actor=world.bob, vm=vm, labels=labels)
    assert any(words in message for message in refused.value.errors["labels"])
    row = fresh(vm)
    assert row.labels == {"app": "web"} and row.resource_version == vm.resource_version
    assert AuditLog.objects.filter(action="vm.relabel").count() == 1


def test_a_pool_member_keeps_its_pools_label_and_no_vm_takes_one(world):
    from compute.models import VMPool

    vm = make_vm(world, name="member")
    pool = VMPool.objects.create(
        tenant=world.acme, name="web", image=vm.image, vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(
        pool=pool, labels={"isotope.dev/pool": "web", "app": "web"}
    )
    changed = vm_services.vm_relabel(actor=world.bob, vm=fresh(vm), labels={"app": "api"})
    assert changed.labels == fresh(vm).labels == {"app": "api", "isotope.dev/pool": "web"}
    for vm_labels, target in (
        ({"isotope.dev/pool": "other"}, vm),
        ({"isotope.dev/pool": "web"}, None),
    ):
        target = target or make_vm(world, name="loner")
        before = fresh(target)
        with pytest.raises(ValidationError) as refused:
            vm_services.vm_relabel(actor=world.bob, vm=before, labels=vm_labels)
        assert refused.value.errors["labels"] == ["isotope.dev/pool is set by the VM's pool only."]
        assert fresh(target).resource_version == before.resource_version


def test_a_viewer_cannot_change_labels(world):
    vm = make_vm(world)
    with pytest.raises(PermissionDenied):
        vm_services.vm_relabel(actor=world.carol, vm=vm, labels={"app": "web"})
    assert fresh(vm).labels == {} and fresh(vm).resource_version == vm.resource_version


def test_a_relabelled_vm_leaves_the_service_it_matched_and_joins_the_one_it_matches_now(world):
    make_vm(world, name="first")  # the tenant's first VM brings the default network
    base = world.acme.networks.get(name="default").network.network_address
    vm = labelled_vm(world, "moved", {"app": "web"}, leases=[f"{base + 40}/24"])
    web = make_service_named(world, "web", {"app": "web"})
    api = make_service_named(world, "api", {"app": "api"})
    status = LoadBalancerStatus(cluster_ip="10.96.0.10")
    for service in (web, api):  # what a sync records
        service.refresh_from_db()
        service_services.service_synced(service, service_services._vm_members(service), status)
    web.refresh_from_db()
    assert [(m["name"], m["address"]) for m in web.endpoints] == [("moved", str(base + 40))]

    vm_services.vm_relabel(actor=world.bob, vm=vm, labels={"app": "api"})

    for service in (web, api):  # the syncs the relabel queued, run here
        service.refresh_from_db()
        service_services.service_synced(service, service_services._vm_members(service), status)
    web.refresh_from_db()
    api.refresh_from_db()
    assert web.endpoints == []
    assert [(m["name"], m["address"]) for m in api.endpoints] == [("moved", str(base + 40))]
    assert Event.objects.filter(name="web", reason="EndpointsChanged").count() == 2


def test_a_service_that_selected_the_old_labels_syncs_even_before_it_listed_the_vm(world):
    make_vm(world, name="first")
    base = world.acme.networks.get(name="default").network.network_address
    vm = labelled_vm(world, "moved", {"app": "web"}, leases=[f"{base + 41}/24"])
    web = make_service_named(world, "web", {"app": "web"})  # no sync recorded the VM yet
    api = make_service_named(world, "api", {"app": "api"})
    other = make_service_named(world, "other", {"app": "db"})
    VirtualMachine.objects.filter(pk=vm.pk).update(labels={"app": "api"})
    relabelled = fresh(vm)

    assert service_services.vm_changed(relabelled) == [api.pk]
    queued = service_services.vm_changed(relabelled, before={"app": "web"})
    assert sorted(queued) == sorted([web.pk, api.pk]) and other.pk not in queued


# --- Workloads -------------------------------------------------------------------------
def make_workload(demo, name: str, kind: str = "Deployment", labels=None, phase=Phase.RUNNING):
    workload = workload_services.workload_create(
        actor=None,
        tenant=demo.acme,
        name=name,
        image="nginx:1.27",
        kind=kind,
        labels=labels or {},
    )
    Workload.objects.filter(pk=workload.pk).update(phase=phase)
    return Workload.objects.get(pk=workload.pk)


@pytest.mark.parametrize(
    ("kind", "phase", "shown"),
    [
        ("Deployment", Phase.RUNNING, Phase.PENDING),  # its pods roll to carry them
        ("Deployment", Phase.FAILED, Phase.FAILED),
        ("Pod", Phase.RUNNING, Phase.RUNNING),  # a pod's own labels change in place
    ],
)
def test_a_workloads_labels_change_as_a_new_generation(world, kind, phase, shown):
    workload = make_workload(world, "web", kind=kind, labels={"app": "web"}, phase=phase)
    changed = workload_services.workload_relabel(
        actor=world.bob, workload=workload, labels={"app": "api"}
    )
    row = Workload.objects.get(pk=workload.pk)
    assert row.labels == {"app": "api"} == changed.labels
    assert row.generation == workload.generation + 1
    assert row.resource_version == workload.resource_version + 1
    assert row.phase == shown
    assert AuditLog.objects.get(action="workload.relabel").detail == {
        "from": {"app": "web"},
        "to": {"app": "api"},
    }
    assert Event.objects.filter(
        kind="workload", name="web", message="Labels changed to app=api by bob."
    ).exists()
    spec = workload_services.workload_spec(row)
    main = manifests.workload_objects(spec)[0]
    if kind == "Deployment":
        template = main["spec"]["template"]["metadata"]["labels"]
        assert template["app"] == "api"
        # The selector is immutable: it stays the workload's own label.
        assert main["spec"]["selector"] == {"matchLabels": {manifests.WORKLOAD_LABEL: "web"}}
    else:
        assert main["metadata"]["labels"]["app"] == "api"


def test_isotopes_own_pod_labels_win_over_a_tenants_label_of_the_same_key(world):
    workload = make_workload(world, "web", labels={manifests.WORKLOAD_LABEL: "other"})
    labels = manifests.pod_labels(workload_services.workload_spec(workload))
    assert labels[manifests.WORKLOAD_LABEL] == "web"


def test_bad_labels_or_a_deleting_workload_change_nothing(world):
    workload = make_workload(world, "web", labels={"app": "web"})
    with pytest.raises(ValidationError):
        workload_services.workload_relabel(actor=world.bob, workload=workload, labels={"a b": ""})
    with pytest.raises(PermissionDenied):
        workload_services.workload_relabel(actor=world.carol, workload=workload, labels={})
    Workload.objects.filter(pk=workload.pk).update(deleting=True, phase=Phase.DELETING)
    with pytest.raises(Conflict):
        workload_services.workload_relabel(actor=world.bob, workload=workload, labels={})
    row = Workload.objects.get(pk=workload.pk)
    assert row.labels == {"app": "web"} and row.generation == workload.generation
    assert not AuditLog.objects.filter(action="workload.relabel").exists()


def test_a_service_that_selected_a_workloads_old_labels_syncs_too(world):
    workload = make_workload(world, "pods", labels={"app": "web"})
    web = make_service_named(world, "web", {"app": "web"})
    api = make_service_named(world, "api", {"app": "api"})
    Workload.objects.filter(pk=workload.pk).update(labels={"app": "api"})
    relabelled = Workload.objects.get(pk=workload.pk)
    assert service_services.workload_changed(relabelled) == [api.pk]
    queued = service_services.workload_changed(relabelled, before={"app": "web"})
    assert sorted(queued) == sorted([web.pk, api.pk])
