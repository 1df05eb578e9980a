"""Coalesced provision requests (compute/services/dispatch.py): many creates, one Celery
message; a real worker (threads, on the test Redis) provisions every VM on libvirt's test
driver; a dispatch that could not be sent, was lost or failed half-way loses no VM."""

from __future__ import annotations

import queue
import threading

import pytest
from kombu.exceptions import OperationalError

from compute.choices import Phase
from compute.models import VirtualMachine
from compute.services import dispatch, reconcile
from compute.services import vms as vm_services
from compute.tasks import libvirt as libvirt_tasks
from monitoring.live import redis_client
from portal.celery import app
from tests.conftest import queued, queues_purge, threads_worker, wait_for

pytestmark = pytest.mark.libvirt_test_driver


def create(demo, name: str) -> VirtualMachine:
    return vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=128
    )


QUEUES = ["default", "libvirt"]


def purge() -> None:
    """Every message on the queues: the dispatch is lost (a broker restarted without its
    data)."""
    queues_purge(QUEUES)


def waiting_ids() -> list[int]:
    return [int(vm_id) for vm_id in redis_client().lrange(dispatch.WAITING, 0, -1)]


def phases(vms: list[VirtualMachine]) -> set[str]:
    rows = VirtualMachine.objects.filter(pk__in=[vm.pk for vm in vms])
    return set(rows.values_list("phase", flat=True))


def all_running(vms: list[VirtualMachine]) -> bool:
    return phases(vms) == {Phase.RUNNING}


def worker():
    return threads_worker(QUEUES)


@pytest.fixture
def host(make_host, tiny_image):
    app.conf.task_always_eager = False
    purge()
    return make_host("node1")


@pytest.mark.django_db(transaction=True)
def test_ten_creates_send_one_message_and_a_worker_then_runs_all_ten(demo, host):
    vms = [create(demo, f"web{n}") for n in range(10)]

    # One Celery message for the ten (the dispatch, on the queue of tasks that need no
    # hypervisor), and the ten ids in the order they were created.
    assert (queued("default"), queued("libvirt")) == (1, 0)
    assert waiting_ids() == [vm.pk for vm in vms]
    assert phases(vms) == {Phase.PENDING}

    with worker():
        wait_for(lambda: all_running(vms), 60, message="not every VM came up")
        assert waiting_ids() == []
        wait_for(lambda: not redis_client().exists(dispatch.ARMED), 10)
        # Once the dispatch has ended, a new VM arms the flag again and runs too.
        later = create(demo, "later")
        wait_for(lambda: all_running([later]), 60, message="a VM created after the dispatch")


@pytest.mark.django_db(transaction=True)
def test_a_lost_dispatch_holds_its_vms_only_until_the_flag_expires(demo, host, monkeypatch):
    monkeypatch.setattr(dispatch, "ARMED_SECONDS", 1)
    first = create(demo, "first")
    purge()
    assert waiting_ids() == [first.pk]
    wait_for(lambda: not redis_client().exists(dispatch.ARMED), 10)

    with worker():
        second = create(demo, "second")  # arms the flag again: the dispatch takes both
        wait_for(lambda: all_running([first, second]), 60, message="the first VM was lost")
    assert VirtualMachine.objects.get(pk=first.pk).phase == Phase.RUNNING


def test_a_failed_send_puts_its_id_and_the_rest_back_in_order(db):
    dispatch.requests_append([11, 12, 13, 14])
    sent: list[int] = []

    def broker_down_at_13(vm_id: int) -> None:
        if vm_id == 13:
            raise ConnectionError("broker unreachable")
        sent.append(vm_id)

    with pytest.raises(ConnectionError):
        dispatch.provision_dispatch(broker_down_at_13)
    assert sent == [11, 12]
    assert waiting_ids() == [13, 14]
    assert redis_client().exists(dispatch.ARMED)  # still armed: the task's retry drains

    assert dispatch.provision_dispatch(sent.append) == 2
    assert sent == [11, 12, 13, 14]
    assert not redis_client().exists(dispatch.ARMED)


def test_no_id_is_stranded_when_appends_race_the_end_of_a_dispatch(db):
    """Bursts of ids appended from four threads while a dispatch drains them; every
    append that armed the flag starts a dispatch, as its message would. An id appended
    between a dispatch's last take and its disarm would be left waiting with no dispatch
    to come: after each burst, once the dispatches it started have ended, nothing
    waits, and every id was sent exactly once."""
    dispatches: queue.Queue = queue.Queue()
    sent: list[int] = []
    lock = threading.Lock()

    def record(vm_id: int) -> None:
        with lock:
            sent.append(vm_id)

    def drainer() -> None:
        while dispatches.get():
            dispatch.provision_dispatch(record)
            dispatches.task_done()

    def appender(ids: range) -> None:
        for vm_id in ids:
            if dispatch.requests_append([vm_id]):
                dispatches.put(True)

    thread = threading.Thread(target=drainer)
    thread.start()
    try:
        for burst in range(60):
            first = burst * 100
            appenders = [
                threading.Thread(target=appender, args=(range(first + n * 5, first + n * 5 + 5),))
                for n in range(4)
            ]
            for one in appenders:
                one.start()
            for one in appenders:
                one.join()
            dispatches.join()
            assert waiting_ids() == [], f"ids stranded after burst {burst}"
            assert not redis_client().exists(dispatch.ARMED)
    finally:
        dispatches.put(False)
        thread.join()
    assert sorted(sent) == [b * 100 + i for b in range(60) for i in range(20)]


@pytest.mark.django_db(transaction=True)
def test_without_a_worker_in_eager_mode_a_create_provisions_at_once(demo, host, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    try:
        vm = create(demo, "eager")
    finally:
        app.conf.task_always_eager = False
    assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING
    assert queued("default") == 0 and waiting_ids() == []


@pytest.mark.django_db(transaction=True)
def test_a_lost_dispatch_and_no_create_after_it_the_reconciler_runs_the_vm(demo, host, settings):
    settings.ISOTOPE_STUCK_SECONDS = 1
    vm = create(demo, "alone")
    purge()
    with worker():
        wait_for(lambda: reconcile.reconcile_host(host)["redriven"] == 1, 30, 0.5)
        wait_for(lambda: all_running([vm]), 60, message="the reconciler did not bring it up")


@pytest.mark.django_db(transaction=True)
def test_a_dispatch_that_cannot_be_sent_leaves_the_next_create_to_send_one(demo, host, monkeypatch):
    def broker_unreachable(*args, **kwargs):
        raise OperationalError("Error 111 connecting to the broker. Connection refused.")

    monkeypatch.setattr(libvirt_tasks.vm_provision_dispatch, "delay", broker_unreachable)
    with pytest.raises(OperationalError):
        create(demo, "first")
    monkeypatch.undo()
    # Its row is committed and its id waits; the flag it armed is down again.
    first = VirtualMachine.objects.get(tenant=demo.acme, name="first")
    assert waiting_ids() == [first.pk]
    assert not redis_client().exists(dispatch.ARMED)

    second = create(demo, "second")
    assert queued("default") == 1
    with worker():
        wait_for(lambda: all_running([first, second]), 60, message="the first VM was held")
