"""Resizing a stopped VM: the host's capacity is checked the way the scheduler checks it,
a refusal changes nothing, and any valid name can resize (libvirt test driver)."""

from __future__ import annotations

import json

import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import Phase
from compute.models import VirtualMachine
from compute.scheduler import NoHostAvailable
from compute.services import vms as vm_services
from compute.tasks import libvirt as libvirt_tasks
from monitoring.models import Event
from tenants import services as tenant_services
from tenants.models import AuditLog, Quota
from tests.compute.services.test_vm_lifecycle import wait_phase

pytestmark = pytest.mark.libvirt_test_driver


def stopped_vm(demo, name: str, *, vcpus: int = 1, memory_mib: int = 256) -> VirtualMachine:
    """A VM provisioned (stopped) by the real task body in this process."""
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=vcpus,
        memory_mib=memory_mib,
        start=False,
    )
    libvirt_tasks.vm_provision.apply(args=(vm.pk,))
    vm = VirtualMachine.objects.select_related("tenant", "host").get(pk=vm.pk)
    assert vm.phase == Phase.STOPPED
    return vm


def used(tenant) -> tuple:
    quota = Quota.objects.get(tenant=tenant)
    return (quota.used_vms, quota.used_cpu, quota.used_memory)


@pytest.fixture
def roomy_quota(demo):
    tenant_services.quota_set(
        actor=None, tenant=demo.acme, limits={"cpu": 64, "memory": 65536, "vms": 10}
    )


def test_growing_past_the_hosts_memory_is_refused_with_the_schedulers_reason(
    demo, make_host, tiny_image, roomy_quota
):
    make_host("small", cpus=2, memory_mib=2048)
    stopped_vm(demo, "neighbour", memory_mib=1536)
    vm = stopped_vm(demo, "web", memory_mib=256)
    before = used(demo.acme)

    with pytest.raises(NoHostAvailable) as refused:
        vm_services.vm_update(actor=demo.bob, vm=vm, memory_mib=1024)

    # The same words the scheduler uses for a new VM that does not fit.
    with pytest.raises(NoHostAvailable) as create_refused:
        vm_services.vm_create(
            actor=demo.bob, tenant=demo.acme, name="new-one", image="tiny", vcpus=1, memory_mib=512
        )
    assert refused.value.message == create_refused.value.message
    assert refused.value.message == "0/1 hosts can take this VM: 1 with too little free memory."
    assert refused.value.errors == {"memory_mib": [refused.value.message]}
    fresh = VirtualMachine.objects.get(pk=vm.pk)
    assert (fresh.vcpus, fresh.memory_mib, fresh.resource_version) == (1, 256, vm.resource_version)
    assert used(demo.acme) == before
    assert not Event.objects.filter(name="web", reason="Resized").exists()
    assert not AuditLog.objects.filter(action="vm.resize").exists()


def test_growing_past_the_hosts_vcpus_is_refused_through_the_api_and_changes_nothing(
    demo, make_host, tiny_image, roomy_quota, api
):
    make_host("small", cpus=1, memory_mib=8192)  # 4 schedulable vCPUs (ratio 4)
    stopped_vm(demo, "neighbour", vcpus=3)
    vm = stopped_vm(demo, "web", vcpus=1)
    before = used(demo.acme)

    response = api(demo.bob).patch(
        "/api/v1/tenants/acme/virtualmachines/web/", {"spec": {"vcpus": 2}}, format="json"
    )

    assert response.status_code == 409, response.content
    problem = json.loads(response.content)
    assert problem["detail"] == "0/1 hosts can take this VM: 1 with too few free vCPUs."
    assert problem["errors"] == {"spec.vcpus": [problem["detail"]]}
    fresh = VirtualMachine.objects.get(pk=vm.pk)
    assert (fresh.vcpus, fresh.resource_version) == (1, vm.resource_version)
    assert used(demo.acme) == before


def test_a_vm_may_grow_into_the_room_its_own_old_size_leaves(
    demo, make_host, tiny_image, roomy_quota
):
    make_host("small", cpus=2, memory_mib=2048)
    vm = stopped_vm(demo, "web", memory_mib=1024)
    vm = vm_services.vm_update(actor=demo.bob, vm=vm, memory_mib=2048)
    assert VirtualMachine.objects.get(pk=vm.pk).memory_mib == 2048
    assert used(demo.acme) == (1, 1, 2048)


def test_shrinking_is_allowed_even_on_a_host_in_maintenance(
    demo, make_host, tiny_image, roomy_quota
):
    host = make_host("small", cpus=2, memory_mib=2048)
    vm = stopped_vm(demo, "web", vcpus=2, memory_mib=1024)
    type(host).objects.filter(pk=host.pk).update(maintenance=True)
    vm_services.vm_update(actor=demo.bob, vm=vm, vcpus=1, memory_mib=512)
    assert used(demo.acme) == (1, 1, 512)
    with pytest.raises(NoHostAvailable, match="1 in maintenance"):
        vm_services.vm_update(actor=demo.bob, vm=vm, memory_mib=1024)


def test_a_vm_with_a_63_character_name_can_resize_and_starts_at_its_new_size(
    demo, make_host, tiny_image, celery_worker
):
    make_host()
    name = "a" * 30 + "-" + "b" * 32
    assert len(name) == 63
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        start=False,
    )
    vm = wait_phase(vm, Phase.STOPPED)
    vm = vm_services.vm_update(actor=demo.bob, vm=vm, vcpus=2, memory_mib=512)
    assert (vm.vcpus, vm.memory_mib) == (2, 512)
    assert used(demo.acme)[1:] == (2, 512)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    vm = wait_phase(vm, Phase.RUNNING)
    from compute.backends.libvirt.backend import shared_connection

    info = shared_connection(vm.host.uri).lookupByName(vm.domain_name).info()
    assert (info[3], info[1]) == (2, 512 * 1024)


def test_a_resize_that_breaks_a_size_rule_names_the_field_and_changes_nothing(
    demo, make_host, tiny_image
):
    make_host()
    vm = stopped_vm(demo, "web")
    with pytest.raises(vm_services.ValidationError) as refused:
        vm_services.vm_update(actor=demo.bob, vm=vm, memory_mib=64)
    assert set(refused.value.errors) == {"memory_mib"}  # the image needs 128 MiB
    assert VirtualMachine.objects.get(pk=vm.pk).memory_mib == 256


def test_a_start_that_runs_before_the_resize_task_boots_the_new_size_and_nothing_fails(
    demo, make_host, tiny_image, roomy_quota
):
    """Resize then start at once: the two tasks may run in either order. A start that
    comes first applies the size itself; the late resize task then finds nothing to do
    (it used to mark the VM Failed: "must be stopped")."""
    make_host()
    vm = stopped_vm(demo, "quick")
    vm = vm_services.vm_update(actor=demo.bob, vm=vm, vcpus=2, memory_mib=512)
    vm = vm_services.vm_action(actor=demo.bob, vm=vm, action="start")

    libvirt_tasks.vm_apply.apply(args=(vm.pk,))  # the start's task first
    libvirt_tasks.vm_redefine.apply(args=(vm.pk,))  # then the resize's

    vm = VirtualMachine.objects.select_related("host").get(pk=vm.pk)
    assert vm.phase == Phase.RUNNING, vm.message
    info = shared_connection(vm.host.uri).lookupByName(vm.domain_name).info()
    assert (info[3], info[1]) == (2, 512 * 1024)
