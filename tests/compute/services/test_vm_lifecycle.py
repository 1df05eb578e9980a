"""VMs on libvirt's test driver through real Celery workers: create, operate, delete."""

from __future__ import annotations

import libvirt
import pytest

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
    conn = libvirt.open(host.uri)
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
