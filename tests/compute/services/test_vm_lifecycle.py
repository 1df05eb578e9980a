"""VMs on libvirt's test driver through real Celery workers: create, operate, delete."""

from __future__ import annotations

import libvirt
import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import Phase
from compute.models import VirtualMachine
from compute.services import vms as vm_services
from tenants import services
from tenants.choices import Role
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


def wait_ready(vm, timeout: float = 90) -> VirtualMachine:
    """Wait until ``vm``'s guest is up (its Ready condition), not only its domain
    running: what every test that talks to a guest needs before it starts."""

    def ready():
        fresh = VirtualMachine.objects.get(pk=vm.pk)
        return fresh.phase == Phase.RUNNING and fresh.ready == "True"

    wait_for(
        ready,
        timeout,
        interval=0.1,
        message=f"{vm.name} did not turn Ready (is {phase_of(vm)}, "
        f"{VirtualMachine.objects.get(pk=vm.pk).ready_reason})",
    )
    return VirtualMachine.objects.select_related("tenant", "host").get(pk=vm.pk)


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


def test_vms_whose_old_domain_names_collided_get_domains_of_their_own(
    demo, make_host, tiny_image, celery_worker
):
    """``<tenant>--<vm>`` named acme--x/web and acme/x--web alike; uid names never collide."""
    host = make_host()
    dashed = services.tenant_create(actor=None, slug="acme--x", name="Dashed")
    services.membership_add(actor=None, tenant=dashed, user=demo.bob, role=Role.OPERATOR)
    first = vm_services.vm_create(
        actor=demo.bob, tenant=dashed, name="web", image="tiny", vcpus=1, memory_mib=256
    )
    second = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="x--web", image="tiny", vcpus=1, memory_mib=256
    )
    wait_phase(first, Phase.RUNNING)
    wait_phase(second, Phase.RUNNING)
    assert first.domain_name != second.domain_name
    conn = shared_connection(host.uri)
    assert {conn.lookupByName(vm.domain_name).UUIDString() for vm in (first, second)} == {
        VirtualMachine.objects.get(pk=first.pk).backend_id,
        VirtualMachine.objects.get(pk=second.pk).backend_id,
    }
    assert (
        conn.lookupByName(first.domain_name).metadata(libvirt.VIR_DOMAIN_METADATA_TITLE, None)
        == "acme--x/web"
    )


def test_a_domain_of_another_vm_under_its_name_is_never_adopted(db, make_host):
    from compute.backends import BackendError, DomainSpec, backend_for_host

    backend = backend_for_host(make_host())
    spec = DomainSpec(
        name="isotope-shared", vcpus=1, memory_mib=128, tenant="acme", vm_name="a", vm_uid="1"
    )
    backend_id = backend.define(spec)
    assert backend.define(spec) == backend_id  # its own domain: adopted (idempotent)
    other = DomainSpec(
        name="isotope-shared", vcpus=2, memory_mib=256, tenant="globex", vm_name="b", vm_uid="2"
    )
    with pytest.raises(BackendError, match="belongs to another VM"):
        backend.define(other)
    conn = shared_connection(backend.uri)
    assert conn.lookupByName("isotope-shared").UUIDString() == backend_id
    assert conn.lookupByName("isotope-shared").info()[3] == 1


def test_ready_follows_running_where_there_is_nothing_to_probe_and_resets_on_stop(
    demo, make_host, tiny_image, celery_worker
):
    make_host()
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    vm = wait_ready(vm, timeout=15)
    # libvirt's test driver runs no guest: nothing to wait for beyond the domain.
    assert vm.ready_reason == "NoReadinessProbe"
    ready_at = vm.ready_changed
    vm_services.vm_action(actor=demo.bob, vm=vm, action="stop")
    vm = wait_phase(vm, Phase.STOPPED)
    assert (vm.ready, vm.ready_reason) == ("False", Phase.STOPPED)
    assert vm.ready_changed > ready_at  # when it went (Stopping), not when it stopped


def test_with_nothing_to_probe_a_provisioned_vm_is_running_and_ready_in_one_change(
    demo, make_host, tiny_image, django_capture_on_commit_callbacks
):
    from compute.tasks.libvirt import vm_provision
    from monitoring.live import state_snapshot
    from monitoring.models import Event

    make_host()
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    version = VirtualMachine.objects.get(pk=vm.pk).resource_version
    with django_capture_on_commit_callbacks(execute=True):  # its live pushes too
        vm_provision.apply(args=(vm.pk,))  # the worker's task, run here
    vm = VirtualMachine.objects.get(pk=vm.pk)
    assert (vm.phase, vm.ready, vm.ready_reason) == (Phase.RUNNING, "True", "NoReadinessProbe")
    # Ready from the moment it runs: no "Running, guest booting" in between to watch.
    assert vm.ready_changed == vm.phase_changed
    reasons = list(
        Event.objects.filter(name="web1").order_by("id").values_list("reason", flat=True)
    )
    assert reasons[-4:] == ["Provisioning", "Starting", "Running", "Ready"]
    ready_event = Event.objects.filter(name="web1", reason="Ready").get()
    assert "0.0 s" in ready_event.message
    # Four changes for a watcher: Provisioning, the domain's id, Starting (with the
    # boot's Ready fields), Running (with Ready).
    assert vm.resource_version == version + 4
    [state] = state_snapshot("acme", "vm", "web1")
    assert state["data"]["phase"] == Phase.RUNNING
    assert state["data"]["conditions"][0]["status"] == "True"


def test_a_ready_answer_is_not_written_with_running_for_another_boot(demo, make_host, tiny_image):
    from compute.backends.base import NO_PROBE

    make_host()
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.STARTING, boot_log_offset=900)
    observer = VirtualMachine.objects.select_related("tenant").get(pk=vm.pk)
    observer.boot_log_offset = 100  # it read the VM before a reboot began
    assert vm_services.vm_observe(observer, Phase.RUNNING, ready=NO_PROBE)
    fresh = VirtualMachine.objects.get(pk=vm.pk)
    assert fresh.phase == Phase.RUNNING
    assert (fresh.ready, fresh.ready_reason) == ("False", "GuestBooting")


def test_a_probe_answer_for_an_older_boot_is_not_written(demo, make_host, tiny_image):
    from compute.services import readiness

    make_host()
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING, boot_log_offset=100)
    stale = VirtualMachine.objects.select_related("tenant", "host", "image").get(pk=vm.pk)
    # A reboot begins after the prober read the VM and before it writes.
    readiness.vm_boot_begin(stale, mark=900, rebooting=True)
    stale.boot_log_offset = 100
    version = VirtualMachine.objects.get(pk=vm.pk).resource_version
    answer = readiness.vm_ready_probe(stale)
    assert answer is not None and answer.ready  # the test driver has nothing to probe
    fresh = VirtualMachine.objects.get(pk=vm.pk)
    assert (fresh.ready, fresh.ready_reason, fresh.boot_log_offset) == ("False", "Rebooting", 900)
    assert fresh.resource_version == version
    # The prober of the current boot writes it, once.
    assert readiness.vm_ready_probe(fresh).ready
    assert VirtualMachine.objects.get(pk=vm.pk).ready == "True"
    assert VirtualMachine.objects.get(pk=vm.pk).resource_version == version + 1
    readiness.vm_ready_probe(fresh)
    assert VirtualMachine.objects.get(pk=vm.pk).resource_version == version + 1


def test_the_readiness_sweep_probes_running_vms_that_are_not_ready(
    demo, make_host, tiny_image, celery_worker
):
    from compute.tasks.libvirt import vm_ready_sweep

    make_host()
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    vm = wait_ready(vm, timeout=15)
    # As after a host outage: Running again, readiness not known (no watcher running).
    VirtualMachine.objects.filter(pk=vm.pk).update(ready="Unknown", ready_reason="HostUnreachable")
    assert vm_ready_sweep() == 1
    vm = wait_ready(vm, timeout=15)
    assert vm.ready_reason == "NoReadinessProbe"
    assert vm_ready_sweep() == 0
