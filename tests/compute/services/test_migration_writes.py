"""Writes of a live migration never lose a concurrent one: a progress sample keeps the
user's cancel, and the switch-over to the target never repeats the VM's
resourceVersion (PostgreSQL, libvirt's test driver; the job itself is the qemu tier's)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from compute.backends import MigrationProgress
from compute.choices import MigrationPhase, Phase
from compute.models import Migration, VirtualMachine
from compute.services import migrations as services
from compute.services import vms as vm_services
from monitoring import live
from tests.conftest import postgres_only
from tests.races import held_open, run_in_thread

pytestmark = [pytest.mark.libvirt_test_driver, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def migrating(demo, make_host, tiny_image):
    """web1 Migrating from test1 to test2 with its job Running (rows as the task leaves
    them once the job has started)."""
    source = make_host("test1")
    target = make_host("test2", cpus=1, memory_mib=1024)  # the scheduler prefers test1
    vm = vm_services.vm_create(
        actor=None, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    assert vm.host == source
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.MIGRATING)
    migration = Migration.objects.create(
        tenant=demo.acme,
        vm=vm,
        vm_name=vm.name,
        source=source,
        target=target,
        phase=MigrationPhase.RUNNING,
        started=timezone.now(),
    )
    return migration


def test_a_progress_sample_taken_before_a_cancel_keeps_the_cancel_visible(demo, migrating):
    postgres_only()
    task_copy = Migration.objects.select_related("tenant").get(pk=migrating.pk)
    services.migration_cancel(actor=demo.alice, migration=migrating)
    cancelled = Migration.objects.get(pk=migrating.pk)

    services.migration_progress(
        task_copy,
        MigrationProgress(memory_processed=64, memory_remaining=192, memory_total=256),
    )

    row = Migration.objects.get(pk=migrating.pk)
    assert row.cancel_requested and row.reason == cancelled.reason
    assert row.reason.startswith("Cancelling (requested by alice)")
    assert row.resource_version == cancelled.resource_version + 1
    assert row.memory_processed == 64 and row.samples == 1
    # What a page (re)connecting now is shown: the sample and the cancel, together.
    [shown] = live.state_snapshot("acme", "migration", str(migrating.uid))
    assert shown["data"]["memoryProcessed"] == 64
    assert shown["data"]["reason"].startswith("Cancelling (requested by alice)")


def test_the_switch_over_waits_for_a_concurrent_write_of_the_vm_and_gets_its_own_version(
    migrating,
):
    postgres_only()
    before = VirtualMachine.objects.get(pk=migrating.vm_id)
    other_observer = VirtualMachine.objects.select_related("tenant").get(pk=before.pk)

    def other_write() -> None:
        vm_services.vm_observe(other_observer, Phase.MIGRATING, vnc_port=5999)

    # Another observer's write holds the VM's row until the switch-over waits on it.
    with held_open(other_write) as commit:
        switch = run_in_thread(
            lambda: services.migration_succeed(migrating, vnc_port=5901, backend_id="uuid-b")
        )
        commit()
        switch["thread"].join(timeout=30)

    assert "error" not in switch, repr(switch.get("error"))
    vm = VirtualMachine.objects.get(pk=before.pk)
    assert (vm.phase, vm.host_id, vm.vnc_port) == (Phase.RUNNING, migrating.target_id, 5901)
    # Two writes, two versions: the switch-over did not reuse the other write's.
    assert vm.resource_version == before.resource_version + 2
    assert Migration.objects.get(pk=migrating.pk).phase == MigrationPhase.SUCCEEDED
