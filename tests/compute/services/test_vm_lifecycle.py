"""VMs on libvirt's test driver through real Celery workers: create, operate, delete."""

from __future__ import annotations

import libvirt  # noqa: F401
import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import Phase
from compute.models import VirtualMachine
from compute.services import vms as vm_services
from tenants.models import Quota
from tests.conftest import wait_for

pytestmark = pytest.mark.libvirt_test_driver


def phase_of(vm) -> str:
    return VirtualMachine.objects.get(pk=vm.pk).phase


def wait_phase(vm, phase: str, timeout: float = 15) -> VirtualMachine:
    wait_for(
        lambda: phase_of(vm) == phase,
        timeout,
        message=f"{vm.name} did not reach {phase} (is {phase_of(vm)})",
    )
    return VirtualMachine.objects.get(pk=vm.pk)


def domain_state(host, name: str):
    conn = shared_connection(host.uri)
    try:
        return conn.lookupByName(name).state()[0]
    except libvirt.libvirtError:
        return None


def test_create_start_stop_start_delete(demo, make_host, tiny_image, celery_worker):
    host = make_host()
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    assert vm.phase == Phase.PENDING and vm.host == host
    vm = wait_phase(vm, Phase.RUNNING)
    assert vm.backend_id
    vm_services.vm_action(actor=demo.bob, vm=vm, action="stop")
    vm = wait_phase(vm, Phase.STOPPED)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    vm = wait_phase(vm, Phase.RUNNING)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="pause")
    vm = wait_phase(vm, Phase.PAUSED)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="resume")
    vm = wait_phase(vm, Phase.RUNNING)
    vm_services.vm_delete(actor=demo.bob, vm=vm)
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 15)
    quota = Quota.objects.get(tenant=demo.acme)
    assert (quota.used_vms, quota.used_cpu, quota.used_memory) == (0, 0, 0)


def test_force_stop_and_reboot_and_resize_when_stopped(demo, make_host, tiny_image, celery_worker):
    make_host()
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="db1", image="tiny", vcpus=1, memory_mib=256
    )
    vm = wait_phase(vm, Phase.RUNNING)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="reboot")
    vm = wait_phase(vm, Phase.RUNNING)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    vm = wait_phase(vm, Phase.STOPPED)
    vm = vm_services.vm_update(actor=demo.bob, vm=vm, vcpus=2, memory_mib=512)
    quota = Quota.objects.get(tenant=demo.acme)
    assert (quota.used_cpu, quota.used_memory, quota.used_vms) == (2, 512, 1)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    vm = wait_phase(vm, Phase.RUNNING)
    conn = shared_connection(vm.host.uri)
    info = conn.lookupByName(vm.domain_name).info()
    assert info[3] == 2 and info[1] == 512 * 1024


def test_actions_in_the_wrong_phase_are_refused_and_change_nothing(
    demo, make_host, tiny_image, celery_worker
):
    from portal.exceptions import Conflict

    make_host()
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="idle",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        start=False,
    )
    vm = wait_phase(vm, Phase.STOPPED)
    for action in ("stop", "pause", "resume", "reboot"):
        with pytest.raises(Conflict):
            vm_services.vm_action(actor=demo.bob, vm=vm, action=action)
    assert phase_of(vm) == Phase.STOPPED


def test_viewers_cannot_act_even_through_the_service(demo, make_host, tiny_image):
    from portal.exceptions import PermissionDenied

    make_host()
    with pytest.raises(PermissionDenied):
        vm_services.vm_create(
            actor=demo.carol, tenant=demo.acme, name="nope", image="tiny", vcpus=1, memory_mib=256
        )
    assert not VirtualMachine.objects.exists()
