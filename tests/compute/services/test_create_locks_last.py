"""A VM create locks its tenant's quota row and its host's row by its last statements
only (``QuotaCharge``, ``scheduler.confirm``): the next create in the tenant, on the
host, does not wait for all of it, and the locked check at its end still decides."""

from __future__ import annotations

import threading

import pytest
from django.db import transaction

from compute.models import VirtualMachine, Volume
from compute.services import networks as network_services
from compute.services import vms as vm_services
from monitoring.models import Event
from portal import signals
from portal.exceptions import QuotaExceeded
from tenants import services as tenant_services
from tenants.models import AuditLog, Quota, Reservation
from tests.conftest import postgres_only, wait_for
from tests.races import run_in_thread, waiting_on_a_lock
from usage.models import UsageInterval

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]


@pytest.fixture
def held_midway():
    """Hold the create of the VM named ``held["name"]`` where its reservation is
    recorded (before it locks anything; its VM row written when it has a root disk,
    queued with its other rows when not) until ``held["go"]``."""
    held = {"name": "", "there": threading.Event(), "go": threading.Event()}

    def pause(sender, reservation, opened, name="", **kwargs):
        if opened and reservation.ref.startswith("vm:") and name == held["name"]:
            held["there"].set()
            held["go"].wait(30)

    signals.ledger_changed.connect(pause, dispatch_uid="test.held_midway")
    try:
        yield held
    finally:
        held["go"].set()
        signals.ledger_changed.disconnect(dispatch_uid="test.held_midway")


def with_its_network(demo) -> None:
    # A tenant's first VM makes its default network and locks the quota row for that
    # (one default network however many first VMs): these tests are about the next ones.
    with transaction.atomic():
        network_services.network_default_ensure(actor=None, tenant=demo.acme)


def create(demo, name: str, disk_gib: int = 0):
    return lambda: (
        vm_services.vm_create(
            actor=demo.alice,
            tenant=demo.acme,
            name=name,
            image="tiny",
            vcpus=1,
            memory_mib=128,
            disk_gib=disk_gib,
        ).host.name
    )


def web1_written_and_held(demo, make_host, held_midway) -> dict:
    """A create of ``web1`` with a root disk, held where its VM row is written and not
    committed; the next create of that name is not held."""
    postgres_only()
    make_host("node-a", cpus=8)
    with_its_network(demo)
    held_midway["name"] = "web1"
    writing = run_in_thread(create(demo, "web1", disk_gib=1))
    assert held_midway["there"].wait(30), writing
    held_midway["name"] = ""
    return writing


@pytest.mark.django_db(transaction=True)
def test_a_create_writing_its_rows_does_not_hold_up_the_next_in_its_tenant_on_its_host(
    demo, make_host, tiny_image, no_worker, held_midway
):
    postgres_only()
    make_host("node-a", cpus=8)
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 10, "cpu": 10})
    with_its_network(demo)
    held_midway["name"] = "first"
    first = run_in_thread(create(demo, "first", disk_gib=1))
    assert held_midway["there"].wait(30), first
    # The first create has written its VM, root volume, reservations, audit row and
    # event and holds them open; the second, in the same tenant on the same host,
    # goes all the way through meanwhile (before, it waited on the quota row).
    second = run_in_thread(create(demo, "second", disk_gib=1))
    second["thread"].join(timeout=30)
    assert not second["thread"].is_alive(), "the second create waited for the first"
    assert second.get("result") == "node-a", second
    assert not waiting_on_a_lock()
    held_midway["go"].set()
    first["thread"].join(timeout=30)
    assert first.get("result") == "node-a", first
    quota = Quota.objects.get(tenant=demo.acme)
    assert (quota.used_vms, quota.used_cpu, quota.used_memory, quota.used_storage) == (
        2,
        2,
        256,
        2,
    )
    assert sorted(Volume.objects.filter(tenant=demo.acme).values_list("name", flat=True)) == [
        "first-root",
        "second-root",
    ]


@pytest.mark.django_db(transaction=True)
def test_two_creates_for_the_last_vm_of_the_quota_place_one_and_refuse_the_other_cleanly(
    demo, make_host, tiny_image, no_worker, held_midway
):
    postgres_only()
    make_host("node-a", cpus=8)
    used = Quota.objects.get(tenant=demo.acme).used_vms
    tenant_services.quota_set(
        actor=None, tenant=demo.acme, limits={"vms": used + 1, "cpu": 10, "storage": 100}
    )
    with_its_network(demo)
    held_midway["name"] = "late"
    late = run_in_thread(create(demo, "late", disk_gib=1))
    assert held_midway["there"].wait(30), late
    # Both passed the early, unlocked check; the one that charges first gets the VM.
    assert create(demo, "early", disk_gib=1)() == "node-a"
    held_midway["go"].set()
    late["thread"].join(timeout=30)
    error = late.get("error")
    assert isinstance(error, QuotaExceeded), late
    assert [(s.resource, s.requested, s.left) for s in error.shortfalls] == [("vms", 1, 0)]
    # Nothing of the refused create is left: not its VM, volume, reservations or usage.
    assert not VirtualMachine.objects.filter(tenant=demo.acme, name="late").exists()
    assert not Volume.objects.filter(tenant=demo.acme, name="late-root").exists()
    quota = Quota.objects.get(tenant=demo.acme)
    live = Reservation.objects.filter(tenant=demo.acme, released__isnull=True)
    assert quota.used_vms == used + 1 == live.filter(kind="vm").count()
    assert quota.used_storage == sum(live.values_list("storage", flat=True))
    metered = live.exclude(kind="network")  # the meter counts no network-hours
    assert set(
        UsageInterval.objects.filter(tenant=demo.acme, end__isnull=True).values_list(
            "reservation_id", flat=True
        )
    ) == set(metered.values_list("pk", flat=True))
    refusal = Event.objects.get(tenant=demo.acme, name="late", reason="QuotaExceeded")
    assert refusal.type == "Warning"
    assert not Event.objects.filter(tenant=demo.acme, name="late", reason="Scheduled").exists()


@pytest.mark.django_db(transaction=True)
def test_a_create_whose_name_is_taken_meanwhile_is_refused_for_its_name_and_leaves_nothing(
    demo, make_host, tiny_image, no_worker, held_midway
):
    """A create's rows are written together before its locks (``portal.sql.batch``):
    one that finds its name taken there, by a create that passed the same unlocked
    name check and committed first, gets the name's 400 and leaves no row behind."""
    from portal.exceptions import ValidationError

    postgres_only()
    make_host("node-a", cpus=8)
    with_its_network(demo)
    held_midway["name"] = "web1"
    late = run_in_thread(create(demo, "web1"))
    assert held_midway["there"].wait(30), late
    held_midway["name"] = ""  # the next create of the name goes through
    assert create(demo, "web1")() == "node-a"
    held_midway["go"].set()
    late["thread"].join(timeout=30)
    error = late.get("error")
    assert isinstance(error, ValidationError), late
    assert "exists already" in error.message and error.errors == {"name": ["Taken."]}
    vm = VirtualMachine.objects.get(tenant=demo.acme, name="web1")
    live = Reservation.objects.filter(tenant=demo.acme, released__isnull=True, kind="vm")
    assert list(live.values_list("object_id", flat=True)) == [str(vm.uid)]
    assert Quota.objects.get(tenant=demo.acme).used_vms == 1
    assert UsageInterval.objects.filter(tenant=demo.acme, vms=1).count() == 1
    scheduled = Event.objects.filter(tenant=demo.acme, name="web1", reason="Scheduled")
    assert list(scheduled.values_list("object_uid", flat=True)) == [str(vm.uid)]
    audits = AuditLog.objects.filter(action="vm.create", target="vm/web1")
    assert audits.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_creates_of_one_name_that_deadlock_end_in_one_vm_and_the_names_400(
    demo, make_host, tiny_image, no_worker, held_midway, monkeypatch
):
    """A create on its last attempt locks the quota row and the host first, then waits
    to write its VM on another create's uncommitted VM of the same name; that one waits
    for the quota row. PostgreSQL ends one of them (a deadlock); that one starts again
    and finds the name taken: the user gets the name's 400, not a 500."""
    from portal.exceptions import ValidationError

    writing = web1_written_and_held(demo, make_host, held_midway)
    monkeypatch.setattr(vm_services, "PLACEMENT_ATTEMPTS", 1)  # locks first, as a last try
    locking = run_in_thread(create(demo, "web1", disk_gib=1))
    wait_for(waiting_on_a_lock, timeout=30, message="the locking create waits on the name")
    held_midway["go"].set()
    for outcome in (writing, locking):
        outcome["thread"].join(timeout=60)
        assert not outcome["thread"].is_alive()
    outcomes = sorted([writing, locking], key=lambda outcome: "error" in outcome)
    assert outcomes[0].get("result") == "node-a", outcomes
    error = outcomes[1].get("error")
    assert isinstance(error, ValidationError), outcomes
    assert error.errors == {"name": ["Taken."]}
    vm = VirtualMachine.objects.get(tenant=demo.acme, name="web1")
    live = Reservation.objects.filter(tenant=demo.acme, released__isnull=True, kind="vm")
    assert list(live.values_list("object_id", flat=True)) == [str(vm.uid)]
    quota = Quota.objects.get(tenant=demo.acme)
    assert (quota.used_vms, quota.used_storage) == (1, 1)
    assert list(Volume.objects.filter(tenant=demo.acme).values_list("name", flat=True)) == [
        "web1-root"
    ]
    assert AuditLog.objects.filter(action="vm.create", target="vm/web1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_create_waiting_on_its_name_holds_no_lock_of_its_tenant(
    demo, make_host, tiny_image, no_worker, held_midway
):
    """Its rows go in before its locks: waiting to write a VM under a name another open
    create wrote, it has not locked the quota row, and the next create in the tenant
    goes through meanwhile."""
    from portal.exceptions import ValidationError

    first = web1_written_and_held(demo, make_host, held_midway)
    second = run_in_thread(create(demo, "web1"))  # its rows wait on the first's name
    wait_for(waiting_on_a_lock, timeout=30, message="the second create waits on the name")
    third = run_in_thread(create(demo, "web2"))
    third["thread"].join(timeout=30)
    assert not third["thread"].is_alive(), "the third create waited on the second"
    assert third.get("result") == "node-a", third
    assert second["thread"].is_alive()
    held_midway["go"].set()
    for outcome in (first, second):
        outcome["thread"].join(timeout=30)
    assert first.get("result") == "node-a", first
    assert isinstance(second.get("error"), ValidationError), second
    assert Quota.objects.get(tenant=demo.acme).used_vms == 2


@pytest.mark.django_db(transaction=True)
def test_a_create_refused_at_its_charge_does_not_wait_for_its_host(
    demo, make_host, tiny_image, no_worker, held_midway
):
    """The host is locked only once the quota's counters took the VM: a create that the
    charge refuses locks the quota row to name what does not fit and never waits on
    the host (which would lock the two rows in the other order)."""
    from compute.models import Host

    postgres_only()
    make_host("node-a", cpus=8)
    used = Quota.objects.get(tenant=demo.acme).used_vms
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": used + 1, "cpu": 10})
    with_its_network(demo)
    held_midway["name"] = "late"
    late = run_in_thread(create(demo, "late"))
    assert held_midway["there"].wait(30), late
    assert create(demo, "early")() == "node-a"  # the quota's last VM
    held, release = threading.Event(), threading.Event()

    def hold_the_host() -> None:
        with transaction.atomic():
            Host.objects.select_for_update().get(name="node-a")
            held.set()
            release.wait(30)

    holder = run_in_thread(hold_the_host)
    try:
        assert held.wait(30), holder
        held_midway["go"].set()
        late["thread"].join(timeout=30)
        assert not late["thread"].is_alive(), "the refused create waited on the host"
    finally:
        release.set()
        holder["thread"].join(timeout=30)
    assert isinstance(late.get("error"), QuotaExceeded), late
    assert not VirtualMachine.objects.filter(tenant=demo.acme, name="late").exists()
    assert Quota.objects.get(tenant=demo.acme).used_vms == used + 1
