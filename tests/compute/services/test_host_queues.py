"""Per-host libvirt queues (compute/queues.py): a host's tasks go to libvirt.<host>, a
worker consuming only node1's queue provisions node1's VMs and leaves node2's waiting
until a worker for node2's queue starts (real Celery workers on the test Redis, libvirt's
test driver)."""

from __future__ import annotations

import contextlib
import threading

import pytest
from celery.signals import task_prerun
from django.test import override_settings
from django.utils import timezone

from compute.choices import MigrationPhase, Phase
from compute.models import Migration, VirtualMachine
from compute.services import vms as vm_services
from portal.celery import app
from tests.conftest import queued, queues_purge, threads_worker, wait_for

pytestmark = pytest.mark.libvirt_test_driver

# What the tests' worker fixture consumes, without any host's own queue.
SHARED = ["default", "libvirt", "kubernetes", "monitoring", "storage"]


def route(name: str, *args) -> str:
    """The queue Celery's own router picks for ``name(*args)``."""
    return app.amqp.router.route({}, name, args, {})["queue"].name


def create(demo, name: str, rack: str) -> VirtualMachine:
    return vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=name,
        image="tiny",
        vcpus=1,
        memory_mib=256,
        node_selector={"rack": rack},
    )


@pytest.fixture
def racks(make_host, tiny_image):
    return make_host("node1", labels={"rack": "1"}), make_host("node2", labels={"rack": "2"})


def test_a_hosts_tasks_go_to_its_own_queue_only_when_it_has_one(demo, racks):
    node1, node2 = racks
    vm = create(demo, "web1", "1")
    assert vm.host == node1
    migration = Migration.objects.create(
        tenant=demo.acme,
        vm=vm,
        vm_name=vm.name,
        source=node1,
        target=node2,
        phase=MigrationPhase.SCHEDULING,
        started=timezone.now(),
    )
    host_tasks = [
        ("compute.tasks.libvirt.vm_provision", vm.pk),
        ("compute.tasks.libvirt.vm_apply", vm.pk),
        ("compute.tasks.libvirt.vm_ready_watch", vm.pk, 0),
        ("compute.tasks.libvirt.host_reconcile", node1.pk),
        ("compute.tasks.libvirt.host_check", node1.pk),
        ("compute.tasks.libvirt.migration_run", migration.pk),
        ("monitoring.tasks.metrics_collect", node1.pk),
    ]
    with override_settings(ISOTOPE_HOST_QUEUES=""):
        assert {route(*task) for task in host_tasks} == {"libvirt", "monitoring"}
    with override_settings(ISOTOPE_HOST_QUEUES="node1"):
        assert {route(*task) for task in host_tasks} == {"libvirt.node1"}
        # node2 has no queue of its own: its tasks stay on the general queue.
        assert route("compute.tasks.libvirt.host_check", node2.pk) == "libvirt"
    with override_settings(ISOTOPE_HOST_QUEUES="*"):
        assert route("compute.tasks.libvirt.host_check", node2.pk) == "libvirt.node2"
        # Tasks tied to no host, and a VM that has no host, stay on the general queue.
        assert route("compute.tasks.libvirt.reconcile_all") == "libvirt"
        assert route("compute.tasks.libvirt.vm_ready_sweep") == "libvirt"
        # The dispatch of new VMs' provisions needs no host (each provision it sends then
        # goes to its host's queue): on the queue of tasks that need no hypervisor.
        assert route("compute.tasks.libvirt.vm_provision_dispatch") == "default"
        VirtualMachine.objects.filter(pk=vm.pk).update(host=None)
        assert route("compute.tasks.libvirt.vm_provision", vm.pk) == "libvirt"
        # A migration runs on its source host's worker, also when the VM is elsewhere.
        assert route("compute.tasks.libvirt.migration_run", migration.pk) == "libvirt.node1"
        assert route("compute.tasks.kubernetes.workload_apply", 1) == "kubernetes"


@contextlib.contextmanager
def deliveries():
    """Record (task name, first argument, queue it was delivered from) of every task run."""
    seen: list[tuple[str, object, str]] = []
    lock = threading.Lock()

    def record(sender=None, task=None, args=None, **kwargs):
        with lock:
            first = args[0] if args else None
            seen.append((task.name, first, task.request.delivery_info.get("routing_key")))

    task_prerun.connect(record, weak=False)
    try:
        yield seen
    finally:
        task_prerun.disconnect(record)


@contextlib.contextmanager
def worker(queues: list[str], name: str):
    """A threads worker named ``name`` consuming ``queues``. Two of them run in this one
    process, so neither takes remote-control commands: the second worker's broadcast
    (pidbox) consumer could block reading its pub/sub socket and never stop, which is
    no part of what these tests check (one worker per process in production)."""
    remote_control = app.conf.worker_enable_remote_control
    app.conf.worker_enable_remote_control = False
    try:
        with _start(queues, name) as started:
            yield started
    finally:
        app.conf.worker_enable_remote_control = remote_control


def _start(queues: list[str], name: str):
    return threads_worker(queues, hostname=f"{name}@isotope-test")


@pytest.mark.django_db(transaction=True)
@override_settings(ISOTOPE_HOST_QUEUES="node1,node2")
def test_node1s_worker_provisions_node1s_vm_and_leaves_node2s_to_node2s_worker(demo, racks):
    app.conf.task_always_eager = False
    queues = [*SHARED, "libvirt.node1", "libvirt.node2"]
    queues_purge(queues)

    with deliveries() as seen, worker([*SHARED, "libvirt.node1"], "node1"):
        web1 = create(demo, "web1", "1")
        web2 = create(demo, "web2", "2")
        assert (web1.host.name, web2.host.name) == ("node1", "node2")
        wait_for(lambda: VirtualMachine.objects.get(pk=web1.pk).phase == Phase.RUNNING, 30)
        assert ("compute.tasks.libvirt.vm_provision", web1.pk, "libvirt.node1") in seen

        # node2's provision waits in node2's queue, untouched by node1's worker.
        # (the dispatch may send it a moment after node1's: the two creates commit apart)
        wait_for(lambda: queued("libvirt.node2") == 1)
        assert VirtualMachine.objects.get(pk=web2.pk).phase == Phase.PENDING
        assert not [task for task in seen if task[1] == web2.pk]

        with worker(["libvirt.node2"], "node2"):
            wait_for(lambda: VirtualMachine.objects.get(pk=web2.pk).phase == Phase.RUNNING, 30)
        assert ("compute.tasks.libvirt.vm_provision", web2.pk, "libvirt.node2") in seen
        # Each VM's tasks ran from its own host's queue only.
        for vm, queue in ((web1, "libvirt.node1"), (web2, "libvirt.node2")):
            assert {q for name, pk, q in seen if pk == vm.pk and "vm_" in name} == {queue}
