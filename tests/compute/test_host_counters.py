"""What a host holds is counted on its row (compute migration 0034's triggers): every
write that places, moves, resizes or removes a VM, or starts or ends a live migration
to the host, moves the counters, whoever writes (services, the admin, raw rows), and
placement reads them instead of summing the VMs of every host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from compute import scheduler
from compute.backends import backend_for_host
from compute.choices import MigrationPhase
from compute.models import Host, Migration, VirtualMachine
from compute.services import vms as vm_services
from compute.tasks.housekeeping import hosts_recount as hosts_recount_task
from tests.conftest import postgres_only, wait_for
from tests.races import held_open, run_in_thread, waiting_on_a_lock

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]


def placed(host: Host) -> tuple[int, int, int]:
    """The host's counters as committed: (vCPUs, MiB, VMs)."""
    return scheduler.host_usage([host])[host.pk]


@pytest.fixture
def hosts(db):
    def host(name: str) -> Host:
        return Host.objects.create(
            name=name, uri=f"test:///{name}", reachable=True, cpus=8, memory_mib=8192
        )

    return host("count-a"), host("count-b")


def vm(demo, image, name: str, on: Host | None, vcpus: int = 1, memory: int = 256):
    return VirtualMachine.objects.create(
        tenant=demo.acme, name=name, vcpus=vcpus, memory_mib=memory, image=image, host=on
    )


@pytest.mark.django_db(transaction=True)
def test_every_kind_of_write_moves_the_counters_of_the_hosts_it_touches(demo, hosts, tiny_image):
    """Each step commits on its own (as a service's transaction would) and the numbers
    are the ones a platform admin reads on the host."""
    a, b = hosts
    web = vm(demo, tiny_image, "web", a, vcpus=2, memory=512)
    vm(demo, tiny_image, "unplaced", None)
    assert placed(a) == (2, 512, 1) and placed(b) == (0, 0, 0)

    # A resize where it is (a stopped VM's vm_update).
    VirtualMachine.objects.filter(pk=web.pk).update(vcpus=3, memory_mib=1024)
    assert placed(a) == (3, 1024, 1)
    # A write of other columns leaves them (and does not lock the host).
    VirtualMachine.objects.filter(pk=web.pk).update(phase="Running", message="up")
    assert placed(a) == (3, 1024, 1)

    # A live migration holds its target's share from Scheduling until it ends.
    move = Migration.objects.create(
        tenant=demo.acme, vm=web, vm_name="web", source=a, target=None, phase="Pending"
    )
    assert placed(b) == (0, 0, 0)
    Migration.objects.filter(pk=move.pk).update(phase=MigrationPhase.SCHEDULING, target=b)
    assert placed(a) == (3, 1024, 1) and placed(b) == (3, 1024, 1)
    Migration.objects.filter(pk=move.pk).update(
        phase=MigrationPhase.RUNNING, started=timezone.now()
    )
    assert placed(b) == (3, 1024, 1)
    # Resized while migrating (a raw write; the services refuse it): the target follows.
    VirtualMachine.objects.filter(pk=web.pk).update(vcpus=4)
    assert placed(a) == (4, 1024, 1) and placed(b) == (4, 1024, 1)
    # Its end, as migration_succeed writes it: the VM moves, the migration is history.
    with transaction.atomic():
        VirtualMachine.objects.filter(pk=web.pk).update(host=b)
        Migration.objects.filter(pk=move.pk).update(phase=MigrationPhase.SUCCEEDED)
    assert placed(a) == (0, 0, 0) and placed(b) == (4, 1024, 1)

    # A failed one gives its target's share back and leaves the source's.
    back = Migration.objects.create(
        tenant=demo.acme, vm=web, vm_name="web", source=b, target=a, phase="Running"
    )
    assert placed(a) == (4, 1024, 1)
    Migration.objects.filter(pk=back.pk).update(phase=MigrationPhase.FAILED)
    assert placed(a) == (0, 0, 0) and placed(b) == (4, 1024, 1)

    # A slot migration deleted (the admin can) gives it back too.
    gone = Migration.objects.create(
        tenant=demo.acme, vm=web, vm_name="web", source=b, target=a, phase="Scheduling"
    )
    assert placed(a) == (4, 1024, 1)
    gone.delete()
    assert placed(a) == (0, 0, 0)

    # The VM deleted while migrating: both hosts lose it, once each.
    Migration.objects.create(
        tenant=demo.acme, vm=web, vm_name="web", source=b, target=a, phase="Running"
    )
    assert placed(a) == (4, 1024, 1)
    VirtualMachine.objects.get(pk=web.pk).delete()
    assert placed(a) == (0, 0, 0) and placed(b) == (0, 0, 0)

    # Many rows at once, and a bulk move.
    VirtualMachine.objects.bulk_create(
        VirtualMachine(
            uid=uuid.uuid4(), tenant=demo.acme, name=f"n{n}", vcpus=1, memory_mib=128,
            image=tiny_image, host=a,
        )
        for n in range(5)
    )  # fmt: skip
    assert placed(a) == (5, 640, 5)
    VirtualMachine.objects.filter(name__in=["n0", "n1"]).update(host=b)
    assert placed(a) == (3, 384, 3) and placed(b) == (2, 256, 2)
    assert scheduler.hosts_miscounted() == {}


@pytest.mark.django_db(transaction=True)
def test_a_transaction_s_own_vms_count_for_its_next_placement(demo, hosts, tiny_image):
    """PostgreSQL counts an inserted VM at the commit; a placement in the same
    transaction counts the transaction's own VMs first, so one transaction that places
    several VMs (a pool's) cannot overfill a host."""
    a, b = hosts
    Host.objects.filter(pk=b.pk).update(enabled=False)
    Host.objects.filter(pk=a.pk).update(cpus=2, cpu_ratio=Decimal("1"))
    with transaction.atomic():
        first = scheduler.schedule(vcpus=1, memory_mib=128)
        vm(demo, tiny_image, "one", first.host)
        second = scheduler.schedule(vcpus=1, memory_mib=128)
        vm(demo, tiny_image, "two", second.host)
        assert first.host == second.host == a
        with pytest.raises(scheduler.NoHostAvailable, match="1 with too few free vCPUs"):
            scheduler.schedule(vcpus=1, memory_mib=128)
    # The refusal ended the transaction, as a refused create's: nothing stays counted.
    assert placed(a) == (0, 0, 0)
    assert not VirtualMachine.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_stale_copy_of_a_host_saved_in_full_does_not_write_its_counts_back(
    demo, hosts, tiny_image
):
    a, _ = hosts
    copy = Host.objects.get(pk=a.pk)  # read before the VM is placed, as a form would
    vm(demo, tiny_image, "web", a)
    copy.maintenance = True
    copy.save()
    a.refresh_from_db()
    assert a.maintenance and placed(a) == (1, 256, 1)


@pytest.mark.django_db(transaction=True)
def test_counts_written_around_the_triggers_are_found_and_repaired(demo, hosts, tiny_image, caplog):
    a, b = hosts
    vm(demo, tiny_image, "web", a, vcpus=2)
    # A restore or a hand's UPDATE that did not go through the rows' triggers.
    Host.objects.filter(pk=a.pk).update(placed_vcpus=7)
    Host.objects.filter(pk=b.pk).update(placed_vms=-1)
    assert scheduler.hosts_miscounted() == {
        "count-a": ((7, 256, 1), (2, 256, 1)),
        "count-b": ((0, 0, -1), (0, 0, 0)),
    }
    # The hourly task repairs them and says which it found off.
    with caplog.at_level("WARNING", logger="compute.tasks.housekeeping"):
        assert hosts_recount_task() == 2
    assert "count-a" in caplog.text and "count-b" in caplog.text
    assert scheduler.hosts_miscounted() == {}
    assert placed(a) == (2, 256, 1) and placed(b) == (0, 0, 0)
    assert hosts_recount_task() == 0


@pytest.mark.django_db(transaction=True)
def test_a_vm_deleted_mid_migration_locks_its_hosts_in_id_order(demo, make_host, tiny_image):
    """The delete's triggers move two hosts' counters: the VM's host and its migration's
    target. Both rows are locked first, lower id first, as a migration's end locks them:
    a delete waiting for the lower host holds no lock on the higher one, so the two
    cannot wait on each other."""
    postgres_only()
    low, high = make_host("node-low"), make_host("node-high")
    assert low.pk < high.pk
    web = vm(demo, tiny_image, "web", low)
    Migration.objects.create(
        tenant=demo.acme, vm=web, vm_name="web", source=low, target=high, phase="Running"
    )
    assert placed(low) == placed(high) == (1, 256, 1)

    def lock_the_lower_host() -> None:
        Host.objects.select_for_update().get(pk=low.pk)

    with held_open(lock_the_lower_host) as commit:
        deleting = run_in_thread(
            lambda: vm_services.vm_finalize_delete(
                VirtualMachine.objects.get(pk=web.pk), backend_for_host(low)
            )
        )
        wait_for(waiting_on_a_lock, timeout=30)
        with transaction.atomic():  # the higher host is free while the delete waits
            Host.objects.select_for_update(nowait=True).get(pk=high.pk)
        commit()
        deleting["thread"].join(timeout=30)
    assert "error" not in deleting, repr(deleting.get("error"))
    assert placed(low) == placed(high) == (0, 0, 0)
    assert Migration.objects.get(vm_name="web").vm is None


BEFORE = [("compute", "0033_nic_addresses_read")]
AFTER = [("compute", "0034_host_placed_counters")]


def test_the_migration_counts_what_hosts_hold_already(migrate_to):
    postgres_only()
    old = migrate_to(BEFORE)
    Tenant = old.get_model("tenants", "Tenant")
    Host = old.get_model("compute", "Host")
    Image = old.get_model("compute", "Image")
    VM = old.get_model("compute", "VirtualMachine")
    Move = old.get_model("compute", "Migration")
    tenant = Tenant.objects.create(slug="acme", name="ACME")
    a = Host.objects.create(name="a", uri="test:///a")
    b = Host.objects.create(name="b", uri="test:///b")
    Host.objects.create(name="empty", uri="test:///empty")
    image = Image.objects.create(name="tiny", kind="kernel", kernel_path="/k", initrd_path="/i")

    def make(name, host, vcpus):
        return VM.objects.create(
            uid=uuid.uuid4(), tenant=tenant, name=name, vcpus=vcpus, memory_mib=256,
            image=image, host=host,
        )  # fmt: skip

    web = make("web", a, 2)
    make("db", a, 1)
    make("cache", b, 4)
    for phase in ("Running", "Succeeded", "Failed"):
        Move.objects.create(
            uid=uuid.uuid4(), tenant=tenant, vm=web, vm_name="web", source=a, target=b,
            phase=phase,
        )  # fmt: skip
    new = migrate_to(AFTER)
    counts = {
        h.name: (h.placed_vcpus, h.placed_memory_mib, h.placed_vms)
        for h in new.get_model("compute", "Host").objects.all()
    }
    assert counts == {"a": (3, 512, 2), "b": (6, 512, 2), "empty": (0, 0, 0)}
    # And from here on, the triggers count.
    VM.objects.filter(name="db").delete()
    a = new.get_model("compute", "Host").objects.get(name="a")
    assert (a.placed_vcpus, a.placed_vms) == (2, 1)


SQLITE_SCRIPT = """
import json
from compute import scheduler
from compute.models import Host, Image, Migration, VirtualMachine
from tenants.models import Tenant
t = Tenant.objects.create(slug="acme", name="ACME")
a = Host.objects.create(name="a", uri="test:///a")
b = Host.objects.create(name="b", uri="test:///b")
i = Image.objects.create(name="tiny", kind="kernel", kernel_path="/k", initrd_path="/i")
v = VirtualMachine.objects.create(tenant=t, name="web", vcpus=2, memory_mib=512, image=i, host=a)
Migration.objects.create(tenant=t, vm=v, vm_name="web", source=a, target=b, phase="Running")
VirtualMachine.objects.filter(pk=v.pk).update(vcpus=3)
moving = list(scheduler.host_usage([a, b]).values())
VirtualMachine.objects.get(pk=v.pk).delete()
deleted = list(scheduler.host_usage([a, b]).values())
off = scheduler.hosts_miscounted()
print(json.dumps({"moving": moving, "deleted": deleted, "miscounted": off}))
"""


def test_a_sqlite_database_migrated_from_scratch_counts_too(tmp_path):
    """``make run``'s embedded database: every migration applied (one that rebuilt the
    VM, migration or host table would have dropped the triggers), then rows written
    through the ORM move the counters as on PostgreSQL."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'isotope.sqlite3'}",
        "ISOTOPE_DEBUG": "1",
    }
    manage = [sys.executable, str(root / "manage.py")]
    subprocess.run([*manage, "migrate", "--verbosity", "0"], env=env, cwd=root, check=True)
    shell = subprocess.run(
        [*manage, "shell", "--no-imports", "-c", SQLITE_SCRIPT],
        env=env,
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(shell.stdout.strip().splitlines()[-1])
    # web (3 vCPUs after its resize) on a, and on its way to b.
    assert result == {"moving": [[3, 512, 1], [3, 512, 1]], "deleted": [[0, 0, 0], [0, 0, 0]],
                      "miscounted": {}}  # fmt: skip
