"""Placement under concurrency (PostgreSQL): no host is ever overcommitted, and creates
that go to different hosts in different tenants never wait for each other."""

from __future__ import annotations

import threading
from collections import Counter
from decimal import Decimal

import pytest
from django.db import close_old_connections, connection, transaction
from django.db.models import Sum

from compute.models import VirtualMachine
from compute.scheduler import NoHostAvailable, schedule
from compute.services import vms as vm_services
from tenants import services as tenant_services
from tenants.choices import ReservationKind, Role
from tenants.models import Quota, Reservation
from tests.conftest import postgres_only, wait_for
from tests.races import run_in_thread, waiting_on_a_lock

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

FULL = "0/2 hosts can take this VM: 2 with too few free vCPUs."


def operators(demo, count: int) -> list:
    """``count`` tenants with roomy quotas, each with an operator: (tenant, user)."""
    from django.contrib.auth import get_user_model

    pairs = []
    for n in range(count):
        tenant = tenant_services.tenant_create(
            actor=None, slug=f"t{n}", quota={"vms": 200, "cpu": 200, "memory": 10**6}
        )
        user = get_user_model().objects.create_user(f"op{n}")
        tenant_services.membership_add(actor=None, tenant=tenant, user=user, role=Role.OPERATOR)
        pairs.append((tenant, user))
    return pairs


@pytest.mark.django_db(transaction=True)
def test_200_parallel_creates_against_room_for_50_place_exactly_50(
    demo, make_host, tiny_image, no_worker
):
    postgres_only()
    # Two hosts with room for 25 one-vCPU VMs each (no overcommit), plenty of memory.
    for name in ("node-a", "node-b"):
        make_host(name, cpus=25, memory_mib=64 * 1024, cpu_ratio=Decimal("1"))
    tenants = operators(demo, 4)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def worker(number: int) -> None:
        tenant, user = tenants[number % len(tenants)]
        try:
            start.wait(timeout=60)
            for n in range(10):
                try:
                    vm_services.vm_create(
                        actor=user,
                        tenant=tenant,
                        name=f"vm-{number}-{n}",
                        image="tiny",
                        vcpus=1,
                        memory_mib=128,
                    )
                    outcome = "placed"
                except NoHostAvailable as refusal:
                    outcome = refusal.message
                with lock:
                    outcomes.append(outcome)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert Counter(outcomes) == {"placed": 50, FULL: 150}
    per_host = dict(
        VirtualMachine.objects.values_list("host__name").annotate(cpu=Sum("vcpus")).order_by()
    )
    assert per_host == {"node-a": 25, "node-b": 25}
    # The quota charges exactly the VMs that exist: refusals reserved nothing.
    for tenant, _ in tenants:
        vms = VirtualMachine.objects.filter(tenant=tenant).count()
        quota = Quota.objects.get(tenant=tenant)
        assert (quota.used_vms, quota.used_cpu) == (vms, vms)
        live = Reservation.objects.filter(
            tenant=tenant, released__isnull=True, kind=ReservationKind.VM
        ).count()
        assert live == vms


@pytest.mark.django_db(transaction=True)
def test_creates_on_different_hosts_in_different_tenants_do_not_wait_for_each_other(
    demo, make_host, tiny_image, no_worker
):
    postgres_only()
    make_host("node-a", cpus=8, labels={"rack": "a"})
    make_host("node-b", cpus=8, labels={"rack": "b"})
    (one, alice), (two, bob) = operators(demo, 2)
    held, release = threading.Event(), threading.Event()

    def first() -> None:
        try:
            with transaction.atomic():
                vm_services.vm_create(
                    actor=alice,
                    tenant=one,
                    name="a1",
                    image="tiny",
                    vcpus=1,
                    memory_mib=128,
                    node_selector={"rack": "a"},
                )
                held.set()  # node-a is locked until this transaction ends
                release.wait(30)
        finally:
            held.set()

    holder = run_in_thread(first)
    try:
        assert held.wait(30) and "error" not in holder, holder
        second = run_in_thread(
            lambda: (
                vm_services.vm_create(
                    actor=bob,
                    tenant=two,
                    name="b1",
                    image="tiny",
                    vcpus=1,
                    memory_mib=128,
                    node_selector={"rack": "b"},
                ).host.name
            )
        )
        # It finishes while the first transaction is still open (the old scheduler
        # locked every host row and waited here until the first committed).
        second["thread"].join(timeout=30)
        assert not second["thread"].is_alive(), "the create on node-b waited for node-a's"
        assert second.get("result") == "node-b", second
        assert not waiting_on_a_lock()
    finally:
        release.set()
        holder["thread"].join(timeout=30)
    assert "error" not in holder, holder
    assert sorted(VirtualMachine.objects.values_list("name", "host__name")) == [
        ("a1", "node-a"),
        ("b1", "node-b"),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_placement_that_finds_its_host_filled_meanwhile_takes_the_next_one(
    demo, make_host, tiny_image, no_worker
):
    postgres_only()
    # Both hosts have one free vCPU and score the same (node-a wins the tie by name).
    for name, cpus in (("node-a", 3), ("node-b", 2)):
        host = make_host(name, cpus=cpus, cpu_ratio=Decimal("1"))
        VirtualMachine.objects.create(
            tenant=demo.acme, name=f"old-{name}", vcpus=cpus - 1, memory_mib=128,
            image=tiny_image, host=host,
        )  # fmt: skip
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"vms": 10, "cpu": 10})
    first_done, release = threading.Event(), threading.Event()

    def first() -> str:
        try:
            with transaction.atomic():
                vm = vm_services.vm_create(
                    actor=demo.bob,
                    tenant=demo.globex,
                    name="x",
                    image="tiny",
                    vcpus=1,
                    memory_mib=128,
                )
                first_done.set()
                release.wait(30)
                return vm.host.name
        finally:
            first_done.set()

    tenant_services.membership_add(
        actor=None, tenant=demo.globex, user=demo.bob, role=Role.OPERATOR
    )
    holder = run_in_thread(first)
    try:
        assert first_done.wait(30) and "error" not in holder, holder
        # Both see node-a with one free vCPU; the second waits on node-a's lock, finds it
        # full once the first commits, and goes to node-b instead of being refused.
        second = run_in_thread(
            lambda: (
                vm_services.vm_create(
                    actor=demo.bob,
                    tenant=demo.acme,
                    name="y",
                    image="tiny",
                    vcpus=1,
                    memory_mib=128,
                ).host.name
            )
        )
        wait_for(waiting_on_a_lock, 30, 0.02, message="the second create did not wait")
    finally:
        release.set()
        holder["thread"].join(timeout=30)
    second["thread"].join(timeout=30)
    assert holder.get("result") == "node-a", holder
    assert second.get("result") == "node-b", second


@pytest.mark.django_db(transaction=True)
def test_a_locking_placement_outside_a_transaction_is_a_programming_error(make_host, tiny_image):
    make_host("node-a")
    with pytest.raises(transaction.TransactionManagementError):
        schedule(vcpus=1, memory_mib=128)


@pytest.mark.django_db(transaction=True)
def test_a_vm_migrating_to_a_host_takes_its_room_there_until_the_migration_ends(
    demo, make_host, tiny_image, no_worker
):
    from django.utils import timezone

    from compute.choices import MigrationPhase
    from compute.models import Migration

    source = make_host("node-a", cpus=1, memory_mib=64 * 1024, cpu_ratio=Decimal("1"))
    vm = vm_services.vm_create(
        actor=None, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256
    )
    target = make_host("node-b", cpus=1, memory_mib=64 * 1024, cpu_ratio=Decimal("1"))
    migration = Migration.objects.create(
        tenant=demo.acme,
        vm=vm,
        vm_name=vm.name,
        source=source,
        target=target,
        phase=MigrationPhase.RUNNING,
        started=timezone.now(),
    )

    def create(name: str):
        with transaction.atomic():
            return vm_services.vm_create(
                actor=None, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
            )

    # web1 fills node-a and, on its way, node-b: nothing else fits anywhere.
    with pytest.raises(NoHostAvailable, match=FULL):
        create("web2")
    assert not VirtualMachine.objects.filter(name="web2").exists()

    Migration.objects.filter(pk=migration.pk).update(phase=MigrationPhase.FAILED)
    assert create("web2").host == target
