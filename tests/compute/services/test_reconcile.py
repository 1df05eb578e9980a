"""The reconciler repairs drift and reports it (libvirt test driver, real workers)."""

from __future__ import annotations

import libvirt  # noqa: F401
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compute.backends.libvirt.backend import shared_connection
from compute.choices import Phase, RestartPolicy
from compute.models import Host, VirtualMachine
from compute.services import networks as network_services
from compute.services import reconcile
from compute.services import vms as vm_services
from monitoring.models import Event
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.conftest import wait_for

pytestmark = pytest.mark.libvirt_test_driver


def running_vm(demo, host, name="web1", policy=RestartPolicy.ON_FAILURE):
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        restart_policy=policy,
    )
    return wait_phase(vm, Phase.RUNNING)


def behind_our_back(host: Host, name: str, action: str) -> None:
    conn = shared_connection(host.uri)
    domain = conn.lookupByName(name)
    getattr(domain, action)()


def warnings_for(vm, reason: str):
    return Event.objects.filter(name=vm.name, reason=reason, type="Warning")


def test_a_domain_destroyed_outside_with_policy_never_is_failed_and_reported(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    vm = running_vm(demo, host, policy=RestartPolicy.NEVER)
    behind_our_back(host, vm.domain_name, "destroy")
    reconcile.reconcile_host(host)
    vm.refresh_from_db()
    assert vm.phase == Phase.FAILED
    assert "outside the portal" in vm.message
    assert warnings_for(vm, "StoppedOutsidePortal").exists()


def test_a_domain_destroyed_outside_with_policy_on_failure_is_restarted(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    vm = running_vm(demo, host, policy=RestartPolicy.ON_FAILURE)
    behind_our_back(host, vm.domain_name, "destroy")
    reconcile.reconcile_host(host)
    assert warnings_for(vm, "StoppedOutsidePortal").exists()
    wait_phase(vm, Phase.RUNNING)
    conn = shared_connection(host.uri)
    assert conn.lookupByName(vm.domain_name).isActive()


def test_a_vanished_domain_is_recreated_under_policy_always(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    vm = running_vm(demo, host, policy=RestartPolicy.ALWAYS)
    behind_our_back(host, vm.domain_name, "destroy")
    behind_our_back(host, vm.domain_name, "undefine")
    reconcile.reconcile_host(host)
    assert warnings_for(vm, "DomainVanished").exists()
    wait_phase(vm, Phase.RUNNING)


def test_a_domain_paused_outside_is_followed_not_fought(demo, make_host, tiny_image, celery_worker):
    host = make_host()
    vm = running_vm(demo, host)
    behind_our_back(host, vm.domain_name, "suspend")
    reconcile.reconcile_host(host)
    vm.refresh_from_db()
    assert vm.phase == Phase.PAUSED
    assert vm.desired_state == "paused"
    assert warnings_for(vm, "PausedOutsidePortal").exists()


def test_an_unreachable_host_marks_its_vms_unknown_and_they_recover(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    vm = running_vm(demo, host)
    good_uri = host.uri
    Host.objects.filter(pk=host.pk).update(uri="qemu+tcp://127.0.0.1:1/system")
    host.refresh_from_db()
    reconcile.reconcile_host(host)
    vm.refresh_from_db()
    host.refresh_from_db()
    assert vm.phase == Phase.UNKNOWN
    assert "unreachable" in vm.message
    assert not host.reachable
    assert VirtualMachine.objects.filter(pk=vm.pk).exists()
    Host.objects.filter(pk=host.pk).update(uri=good_uri)
    host.refresh_from_db()
    reconcile.reconcile_host(host)
    vm.refresh_from_db()
    assert vm.phase == Phase.RUNNING


def test_the_beat_task_reconciles_within_one_interval(demo, make_host, tiny_image, celery_worker):
    from compute.tasks.libvirt import reconcile_all

    host = make_host()
    vm = running_vm(demo, host, policy=RestartPolicy.NEVER)
    behind_our_back(host, vm.domain_name, "destroy")
    reconcile_all.delay()
    wait_for(lambda: warnings_for(vm, "StoppedOutsidePortal").exists(), 10)
    wait_phase(vm, Phase.FAILED)


def test_a_pass_reads_the_interfaces_of_all_its_vms_at_once(
    demo, make_host, tiny_image, celery_worker
):
    """Every 10 s per host: the statements of a pass do not grow with the running VMs
    that have interfaces (their addresses are read from the host's leases each pass)."""
    host = make_host()
    network_services.network_create(
        actor=demo.bob, tenant=demo.acme, name="lan", cidr="10.77.0.0/24"
    )

    def more(count: int, start: int) -> None:
        for index in range(start, start + count):
            vm = vm_services.vm_create(
                actor=demo.bob,
                tenant=demo.acme,
                name=f"nic{index}",
                image="tiny",
                vcpus=1,
                memory_mib=256,
                networks=["lan"],
            )
            wait_phase(vm, Phase.RUNNING)

    def statements() -> int:
        reconcile.reconcile_host(host)  # anything the new VMs still change, first
        with CaptureQueriesContext(connection) as queries:
            counts = reconcile.reconcile_host(host)
        assert counts["ok"] == VirtualMachine.objects.filter(host=host).count()
        return len(queries)

    more(3, 0)
    three = statements()
    more(3, 3)
    assert statements() == three
