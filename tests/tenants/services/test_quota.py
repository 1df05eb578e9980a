"""quota_reserve / quota_release: limits, messages, idempotency, and no overshoot."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import close_old_connections, connection, transaction
from django.db.models import Sum

from portal.exceptions import QuotaExceeded
from tenants import selectors, services
from tenants.models import Quota, Reservation
from tests.conftest import postgres_only

pytestmark = pytest.mark.unit


def reserve(tenant, ref, **amounts):
    with transaction.atomic():
        return services.quota_reserve(tenant=tenant, ref=ref, **amounts)


def usage(tenant) -> dict:
    return {u.resource: u.used for u in selectors.quota_usage(tenant)}


def test_a_reservation_charges_every_resource_and_release_gives_it_back(demo):
    reserve(demo.acme, "vm:a", cpu=2, memory=1024, storage=10, vms=1)
    reserve(demo.acme, "pod:b", cpu=Decimal("0.5"), memory=256, pods=3)
    reserve(demo.acme, "network:c", networks=1)
    assert usage(demo.acme) == {
        "cpu": Decimal("2.5"),
        "memory": 1280,
        "storage": 10,
        "vms": 1,
        "pods": 3,
        "networks": 1,
    }
    assert services.quota_release("vm:a") is True
    assert usage(demo.acme) == {
        "cpu": Decimal("0.5"),
        "memory": 256,
        "storage": 0,
        "vms": 0,
        "pods": 3,
        "networks": 1,
    }


def test_release_twice_gives_back_once(demo):
    reserve(demo.acme, "vm:x", cpu=4, vms=1)
    assert services.quota_release("vm:x") is True
    assert services.quota_release("vm:x") is False
    assert usage(demo.acme)["cpu"] == 0
    assert usage(demo.acme)["vms"] == 0


def test_reserving_the_same_ref_again_does_not_charge_twice(demo):
    first = reserve(demo.acme, "vm:same", cpu=1, vms=1)
    second = reserve(demo.acme, "vm:same", cpu=1, vms=1)
    assert first.pk == second.pk
    assert usage(demo.acme)["vms"] == 1


def test_exceeding_names_the_resource_the_request_and_what_is_left(demo):
    services.quota_set(actor=demo.admin, tenant=demo.acme, limits={"memory": 2048})
    reserve(demo.acme, "vm:1", memory=1536)
    with pytest.raises(QuotaExceeded) as caught:
        reserve(demo.acme, "vm:2", memory=1024)
    error = caught.value
    assert error.resource == "memory"
    assert error.requested == 1024
    assert error.left == 512
    assert "memory" in error.message and "1024" in error.message and "512" in error.message
    assert "memory" in error.errors


def test_a_refusal_names_every_resource_that_does_not_fit_not_only_the_first(demo):
    services.quota_set(
        actor=demo.admin, tenant=demo.acme, limits={"cpu": 4, "memory": 2048, "storage": 10}
    )
    reserve(demo.acme, "vm:1", cpu=2, memory=1024, storage=5, vms=1)
    with pytest.raises(QuotaExceeded) as caught:
        reserve(demo.acme, "vm:2", cpu=4, memory=2048, storage=20, vms=1)
    error = caught.value
    assert [(s.resource, s.requested, s.left, s.limit) for s in error.shortfalls] == [
        ("cpu", 4, 2, 4),
        ("memory", 2048, 1024, 2048),
        ("storage", 20, 5, 10),
    ]
    assert set(error.errors) == {"cpu", "memory", "storage"}  # vms still fits
    assert error.errors["memory"] == [
        "Quota exceeded for memory: requested 2048 MiB, 1024 MiB left of 2048 MiB."
    ]
    assert error.message == (
        "Quota exceeded for cpu: requested 4 cores, 2 cores left of 4 cores; memory: requested "
        "2048 MiB, 1024 MiB left of 2048 MiB; storage: requested 20 GiB, 5 GiB left of 10 GiB."
    )
    assert (error.resource, error.left) == ("cpu", 2)  # the first, as before


def test_a_refused_reservation_changes_nothing(demo):
    services.quota_set(actor=demo.admin, tenant=demo.acme, limits={"vms": 1})
    reserve(demo.acme, "vm:1", cpu=1, memory=512, vms=1)
    before = usage(demo.acme)
    with pytest.raises(QuotaExceeded):
        reserve(demo.acme, "vm:2", cpu=1, memory=512, vms=1)
    assert usage(demo.acme) == before
    assert not Reservation.objects.filter(ref="vm:2").exists()


def test_lowering_a_limit_below_use_is_allowed_then_new_reservations_are_refused(demo):
    reserve(demo.acme, "vm:1", cpu=4, vms=1)
    change = services.quota_set(actor=demo.admin, tenant=demo.acme, limits={"cpu": 2})
    assert change.below_use == ["cpu"]
    assert usage(demo.acme)["cpu"] == 4  # running resources stay
    with pytest.raises(QuotaExceeded) as caught:
        reserve(demo.acme, "vm:2", cpu=1)
    assert caught.value.left == 0


@pytest.mark.django_db(transaction=True)
def test_reserve_outside_a_transaction_is_a_programming_error(demo):
    with pytest.raises(RuntimeError):
        services.quota_reserve(tenant=demo.acme, ref="vm:loose", vms=1)


def test_quota_check_reads_counters_not_the_ledger(demo, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(ref: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            reserve(demo.acme, ref, pods=1)
        return len(captured)

    first = queries("pod:first")
    for n in range(30):
        reserve(demo.acme, f"pod:{n}", pods=1)
    # Lock quota row, look up the ref, update counters, insert, plus the usage meter's
    # constant share (usage.receivers: subject, interval, alert levels): the same
    # whatever the number of existing reservations.
    assert queries("pod:last") == first
    with django_assert_max_num_queries(11):
        reserve(demo.acme, "pod:one-more", pods=1)


def race(attempt, threads: int = 20, each: int = 10) -> list:
    """``attempt(n)`` for n in 0 … threads × each − 1, from ``threads`` threads released
    together (each with its own connection); their results, in the order they came."""
    results: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(start: int) -> None:
        try:
            barrier.wait(timeout=30)
            for n in range(start, start + each):
                outcome = attempt(n)
                with lock:
                    results.append(outcome)
        finally:
            close_old_connections()
            connection.close()

    running = [threading.Thread(target=worker, args=(i * each,)) for i in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=120)
    return results


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_reservations_against_50_vms_never_overshoot(demo):
    postgres_only()
    services.quota_set(actor=demo.admin, tenant=demo.acme, limits={"vms": 50})

    def attempt(n: int) -> str:
        try:
            reserve(demo.acme, f"vm:race-{n}", cpu=0, vms=1)
            return "ok"
        except QuotaExceeded:
            return "refused"

    results = race(attempt)
    assert len(results) == 200
    assert results.count("ok") == 50
    assert results.count("refused") == 150
    live = Reservation.objects.filter(tenant=demo.acme, released__isnull=True)
    assert live.count() == 50
    quota = Quota.objects.get(tenant=demo.acme)
    assert quota.used_vms == live.aggregate(total=Sum("vms"))["total"] == 50

    # Release every reservation twice, concurrently: each gives back exactly once.
    refs = list(live.values_list("ref", flat=True))
    released: list[bool] = []
    lock = threading.Lock()

    def releaser(chunk: list[str]) -> None:
        try:
            for ref in chunk:
                outcome = services.quota_release(ref)
                with lock:
                    released.append(outcome)
        finally:
            connection.close()

    chunks = [refs[i::5] for i in range(5)] * 2
    threads = [threading.Thread(target=releaser, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert released.count(True) == 50
    assert released.count(False) == 50
    quota.refresh_from_db()
    assert quota.used_vms == 0


def charge(tenant, ref: str, **amounts) -> Quota:
    """One create's charge (``QuotaCharge``: record, then lock and add at the end)."""
    with transaction.atomic():
        create = services.QuotaCharge(tenant)
        create.reserve(ref=ref, kind="other", object_id=ref, **amounts)
        return create.charge()


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_create_charges_against_50_vms_never_overshoot_and_name_the_shortfall(
    demo,
):
    postgres_only()
    services.quota_set(actor=demo.admin, tenant=demo.acme, limits={"vms": 50, "memory": 10_000})

    def attempt(n: int) -> object:
        try:
            quota = charge(demo.acme, f"other:race-{n}", vms=1, memory=10)
            return ("ok", quota.used_vms)
        except QuotaExceeded as error:
            return [(s.resource, s.requested, s.left) for s in error.shortfalls]

    outcomes = race(attempt)
    assert len(outcomes) == 200
    charged = sorted(used for kind, used in (o for o in outcomes if o[0] == "ok"))
    # Each charge saw the counters it left: 1, 2, ... 50, every one once.
    assert charged == list(range(1, 51))
    refusals = [o for o in outcomes if o[0] != "ok"]
    assert refusals == [[("vms", 1, 0)]] * 150  # memory fits: only the VMs are named
    live = Reservation.objects.filter(tenant=demo.acme, released__isnull=True)
    assert live.count() == 50  # the refused creates' reservations rolled back
    quota = Quota.objects.get(tenant=demo.acme)
    assert quota.used_vms == 50 and quota.used_memory == 500
    assert quota.used_vms == live.aggregate(total=Sum("vms"))["total"]
