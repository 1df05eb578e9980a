"""VM pools on real QEMU guests on libvirt node1 (qemu tier): a paused warm member is
resumed by a scale-up, and its guest runs on from where it was paused (no second boot)."""

from __future__ import annotations

import secrets

import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import ConditionStatus, Phase
from compute.models import VirtualMachine, VMPool
from compute.services import pools as pool_services
from tests.compute.test_qemu_vms import node1, serial  # noqa: F401 - the fixture
from tests.compute.test_qemu_volumes import guest_of
from tests.conftest import GUEST_BOOT_TIMEOUT, wait_for

pytestmark = pytest.mark.qemu
# The kernel prints this once per boot (the ready banner shows twice in one boot).
BOOT = "Linux version"


def test_a_paused_warm_member_resumes_to_running_with_its_guest_still_alive(
    demo,
    node1,  # noqa: F811
    celery_worker,
):
    name = f"qp-{secrets.token_hex(3)}"
    pool = pool_services.pool_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        replicas=0,
        warm=1,
        warm_mode="paused",
    )
    wait_for(
        lambda: VMPool.objects.get(pk=pool.pk).warm_replicas == 1,
        GUEST_BOOT_TIMEOUT,
        message="the warm member was never booted and paused",
    )
    warm = VirtualMachine.objects.select_related("host").get(pool=pool, pool_warm=True)
    domain = shared_connection(node1.uri).lookupByName(warm.domain_name)
    assert domain.info()[0] == 3  # VIR_DOMAIN_PAUSED: suspended by libvirt
    assert serial(warm).count(BOOT) == 1

    pool_services.pool_scale(actor=demo.bob, pool=VMPool.objects.get(pk=pool.pk), replicas=1)

    def resumed() -> bool:
        vm = VirtualMachine.objects.get(pk=warm.pk)
        return vm.phase == Phase.RUNNING and vm.ready == ConditionStatus.TRUE

    wait_for(resumed, 60, message="the paused warm member did not resume to Running")
    # The same guest: it answers on its console and never booted a second time.
    guest_of(warm).until("echo ALIVE-$((40+2)) > /dev/ttyS0", "ALIVE-42", timeout=120)
    assert serial(warm).count(BOOT) == 1
    assert not VirtualMachine.objects.get(pk=warm.pk).pool_warm
    pool_services.pool_delete(actor=demo.bob, pool=VMPool.objects.get(pk=pool.pk))
    wait_for(lambda: not VMPool.objects.filter(pk=pool.pk).exists(), 120)
