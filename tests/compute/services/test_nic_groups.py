"""Changing an existing interface's security groups (``nic_groups_set``): the row, its
version, audit and event; refusals that change nothing; the task that redefines the
interface's filter on its host. The filter itself on a real host (nwfilter) is checked in
tests/compute/test_qemu_security_groups.py."""

from __future__ import annotations

import pytest

from compute.choices import NicPhase, Phase
from compute.models import NetworkInterface, VirtualMachine
from compute.services import networks as network_services
from compute.services import security_groups as group_services
from compute.tasks import networks as network_tasks
from monitoring.models import Event
from portal.exceptions import Conflict, PermissionDenied, ValidationError
from tenants.models import AuditLog
from tests.compute.test_api_volumes import make_vm

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]


@pytest.fixture
def world(demo, make_host, tiny_image):
    demo.host = make_host("node-a")
    demo.vm = make_vm(demo)
    demo.nic = network_services.nic_create(actor=None, vm=demo.vm, network="default")
    demo.web = group_services.group_create(actor=None, tenant=demo.acme, name="web")
    demo.db = group_services.group_create(actor=None, tenant=demo.acme, name="db")
    return demo


def groups_of(nic) -> list[str]:
    found = NetworkInterface.objects.get(pk=nic.pk).security_groups
    return sorted(found.values_list("name", flat=True))


def test_an_interface_moves_to_other_groups_with_a_new_version_an_audit_and_an_event(world):
    before = NetworkInterface.objects.get(pk=world.nic.pk).resource_version
    nic = network_services.nic_groups_set(actor=world.bob, nic=world.nic, groups=["web", "db"])
    assert groups_of(nic) == ["db", "web"]
    assert nic.resource_version == before + 1
    entry = AuditLog.objects.get(action="nic.update", actor=world.bob)
    assert entry.target == "vm/web1/nic/nic0"
    assert entry.detail == {"security_groups": ["web", "db"], "before": ["default"]}
    event = Event.objects.get(name="web1", reason="InterfaceGroupsChanged")
    assert event.message == "Interface nic0 is in web, db now (was default)."
    # The same groups again: nothing to record.
    again = network_services.nic_groups_set(actor=world.bob, nic=nic, groups=["db", "web"])
    assert again.resource_version == nic.resource_version
    assert AuditLog.objects.filter(action="nic.update").count() == 1


@pytest.mark.parametrize(
    ("groups", "words"),
    [
        (["nope"], "No security group named 'nope'"),
        (["web", "nope"], "No security group named 'nope'"),
        ([], "Choose at least one security group."),
        (["theirs"], "No security group named 'theirs'"),
        ([f"g{i}" for i in range(6)], "At most 5 security groups"),
    ],
)
def test_bad_groups_are_a_field_error_and_nothing_changes(world, groups, words):
    group_services.group_create(actor=None, tenant=world.globex, name="theirs")
    version = NetworkInterface.objects.get(pk=world.nic.pk).resource_version
    with pytest.raises(ValidationError) as refused:
        network_services.nic_groups_set(actor=world.bob, nic=world.nic, groups=groups)
    assert words in refused.value.errors["security_groups"][0]
    assert groups_of(world.nic) == ["default"]
    assert NetworkInterface.objects.get(pk=world.nic.pk).resource_version == version
    assert not AuditLog.objects.filter(action="nic.update").exists()


def test_a_viewer_a_leaving_interface_and_a_migrating_vm_are_refused(world):
    with pytest.raises(PermissionDenied):
        network_services.nic_groups_set(actor=world.carol, nic=world.nic, groups=["web"])
    VirtualMachine.objects.filter(pk=world.vm.pk).update(phase=Phase.MIGRATING)
    with pytest.raises(Conflict) as migrating:
        network_services.nic_groups_set(actor=world.bob, nic=world.nic, groups=["web"])
    assert "web1 is Migrating" in migrating.value.message
    VirtualMachine.objects.filter(pk=world.vm.pk).update(phase=Phase.RUNNING)
    NetworkInterface.objects.filter(pk=world.nic.pk).update(phase=NicPhase.DETACHING)
    with pytest.raises(Conflict) as leaving:
        network_services.nic_groups_set(actor=world.bob, nic=world.nic, groups=["web"])
    assert "nic0 is being removed" in leaving.value.message
    assert groups_of(world.nic) == ["default"]


def test_the_filter_task_runs_for_a_running_vm_only_and_clears_a_filter_failure(
    world, django_capture_on_commit_callbacks
):
    NetworkInterface.objects.filter(pk=world.nic.pk).update(phase=NicPhase.ATTACHED)
    VirtualMachine.objects.filter(pk=world.vm.pk).update(host=world.host)
    with django_capture_on_commit_callbacks() as running:
        network_services.nic_groups_set(actor=world.bob, nic=world.nic, groups=["web"])
    VirtualMachine.objects.filter(pk=world.vm.pk).update(phase=Phase.STOPPED)
    with django_capture_on_commit_callbacks() as stopped:
        network_services.nic_groups_set(actor=world.bob, nic=world.nic, groups=["default"])
    # The same two groups touched; the stopped VM's change does not queue the
    # interface's filter (its start defines it).
    assert len(running) == len(stopped) + 1

    network_services.nic_filter_observe(world.nic, "the host said no")
    failed = NetworkInterface.objects.get(pk=world.nic.pk)
    assert failed.message == "Security groups not applied: the host said no"
    assert Event.objects.filter(reason="InterfaceFilterFailed", type="Warning").exists()
    # The task on the test driver (no packet filters): done, and the message is cleared.
    network_tasks.nic_filter_apply.apply(args=(world.nic.pk,))
    assert NetworkInterface.objects.get(pk=world.nic.pk).message == ""
