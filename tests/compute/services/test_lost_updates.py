"""A user's action is never undone by an observer that read the VM before it.

Each round puts the VM in a known state, lets an observer (a task recording what the
domain does, or the reconciler) take its copy, then starts the observer and the user's
action at the same instant (two real threads, a barrier, PostgreSQL, libvirt's test
driver). Whatever order they commit in, the user's action must be what the VM shows
afterwards, and no two writes may produce the same resourceVersion (ETag).
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from compute.backends import backend_for_host
from compute.backends.libvirt.backend import shared_connection
from compute.choices import DesiredState, Phase, RestartPolicy
from compute.models import VirtualMachine
from compute.services import reconcile
from compute.services import vms as vm_services
from compute.tasks import libvirt as libvirt_tasks
from monitoring import live
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.conftest import postgres_only, wait_for
from tests.races import race

pytestmark = [pytest.mark.libvirt_test_driver, pytest.mark.django_db(transaction=True)]

# Rounds of each race. Without the compare-and-set (observations written whatever the
# generation) or without the row lock, each race below failed within its first ten rounds
# (mostly the first) in every try; 50 leave a wide margin on a machine that interleaves
# them differently.
ROUNDS = 50


def provisioned(demo, host, *, policy=RestartPolicy.ON_FAILURE) -> VirtualMachine:
    """A VM whose domain runs, provisioned by the real task body in this process."""
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="race",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        restart_policy=policy,
    )
    libvirt_tasks.vm_provision.apply(args=(vm.pk,))
    vm = VirtualMachine.objects.select_related("tenant", "host", "image").get(pk=vm.pk)
    assert vm.phase == Phase.RUNNING
    return vm


def reset(vm: VirtualMachine, phase: str, desired: str) -> VirtualMachine:
    """Put the row in the state a round starts from (a test fixture, not a service)."""
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=phase, desired_state=desired, message="")
    return libvirt_tasks._load(vm.pk)


class Versions:
    """Every resourceVersion a write produced, across all rounds: no repeats, and the
    row always shows the newest."""

    def __init__(self, vm: VirtualMachine):
        self.seen: list[int] = [vm.resource_version]

    def record(self, before: int, *produced: int) -> None:
        wrote = [v for v in produced if v != before]
        assert len(set(wrote)) == len(wrote), f"two writes produced version {wrote}"
        self.seen.extend(sorted(wrote))
        assert self.seen == sorted(set(self.seen)), "a resourceVersion repeated or went back"


def test_a_stop_is_never_undone_by_the_start_task_recording_running(demo, make_host, tiny_image):
    """The start task read the VM (Starting) before the user force-stopped it; its
    "the domain runs" must not turn Stopping back into Running."""
    postgres_only()
    host = make_host()
    vm = provisioned(demo, host)
    backend = backend_for_host(host)
    versions = Versions(vm)

    def setup() -> dict:
        copy = reset(vm, Phase.STARTING, DesiredState.RUNNING)
        return {"task": copy, "before": copy.resource_version}

    def observer(state: dict) -> int:
        libvirt_tasks._record(state["task"], backend)
        return state["task"].resource_version

    def user(state: dict) -> int:
        return vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop").resource_version

    def check(state: dict) -> None:
        row = VirtualMachine.objects.get(pk=vm.pk)
        assert (row.desired_state, row.phase) == (DesiredState.STOPPED, Phase.STOPPING)
        versions.record(state["before"], state["observer"], state["user"])
        assert row.resource_version == versions.seen[-1]

    race(ROUNDS, setup, observer, user, check)


def test_a_stop_is_never_undone_by_the_reconciler_following_a_pause_made_outside(
    demo, make_host, tiny_image
):
    """The domain was paused outside the portal; the reconciler adopts "paused" unless
    the user asked for something newer meanwhile (here: stop)."""
    postgres_only()
    host = make_host()
    vm = provisioned(demo, host)
    shared_connection(host.uri).lookupByName(vm.domain_name).suspend()
    last = [vm.resource_version]

    def setup() -> dict:
        reset(vm, Phase.RUNNING, DesiredState.RUNNING)
        return {}

    def observer(state: dict) -> None:
        reconcile.reconcile_host(host)

    def user(state: dict) -> int:
        return vm_services.vm_action(actor=demo.bob, vm=vm, action="stop").resource_version

    def check(state: dict) -> None:
        row = VirtualMachine.objects.get(pk=vm.pk)
        assert (row.desired_state, row.phase) == (DesiredState.STOPPED, Phase.STOPPING)
        assert last[-1] < state["user"] <= row.resource_version
        last.append(row.resource_version)

    race(ROUNDS, setup, observer, user, check)


def test_a_delete_is_never_undone_by_the_restart_policy_leaving_a_guest_stopped(
    demo, make_host, tiny_image
):
    """The guest was destroyed outside the portal and its policy is Never: the
    reconciler sets desired "stopped" — but never over a delete the user asked for."""
    postgres_only()
    host = make_host()
    vm = provisioned(demo, host, policy=RestartPolicy.NEVER)
    shared_connection(host.uri).lookupByName(vm.domain_name).destroy()

    def setup() -> dict:
        reset(vm, Phase.RUNNING, DesiredState.RUNNING)
        return {}

    def observer(state: dict) -> None:
        reconcile.reconcile_host(host)

    def user(state: dict) -> str:
        return vm_services.vm_delete(actor=demo.bob, vm=vm).phase

    def check(state: dict) -> None:
        row = VirtualMachine.objects.get(pk=vm.pk)
        assert (row.desired_state, row.phase) == (DesiredState.DELETED, Phase.DELETING)

    race(ROUNDS, setup, observer, user, check)


def test_concurrent_observations_each_get_their_own_resource_version(demo, make_host, tiny_image):
    """Eight observers holding copies of the same version each record a fact at once:
    eight writes, eight versions, the row at the last."""
    postgres_only()
    host = make_host()
    vm = provisioned(demo, host)
    copies = [libvirt_tasks._load(vm.pk) for _ in range(8)]
    barrier = threading.Barrier(len(copies))
    produced: list[int] = []

    def observe(index: int) -> None:
        try:
            barrier.wait(30)
            vm_services.vm_observe(copies[index], Phase.RUNNING, vnc_port=5900 + index)
            produced.append(copies[index].resource_version)
        finally:
            connection.close()

    threads = [threading.Thread(target=observe, args=(i,)) for i in range(len(copies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    row = VirtualMachine.objects.get(pk=vm.pk)
    assert sorted(produced) == list(range(vm.resource_version + 1, vm.resource_version + 9))
    assert row.resource_version == vm.resource_version + 8
    # A page that resyncs now is given the newest of the eight states.
    [shown] = live.state_snapshot("acme", "vm", vm.name)
    assert shown["data"]["resourceVersion"] == str(row.resource_version)


def test_with_a_real_worker_a_delete_racing_the_reconciler_always_deletes_the_vm(
    demo, make_host, tiny_image, celery_worker
):
    """End to end: each round a running VM's guest is destroyed outside the portal
    (policy Never), the reconciler runs while the user deletes the VM, and the worker
    carries out whatever was decided. The VM and its domain are always gone at the end."""
    postgres_only()
    host = make_host()
    conn = shared_connection(host.uri)
    names = iter(range(1000))

    def setup() -> dict:
        vm = vm_services.vm_create(
            actor=demo.bob,
            tenant=demo.acme,
            name=f"gone-{next(names)}",
            image="tiny",
            vcpus=1,
            memory_mib=256,
            restart_policy=RestartPolicy.NEVER,
        )
        vm = wait_phase(vm, Phase.RUNNING)
        conn.lookupByName(vm.domain_name).destroy()
        return {"vm": vm}

    def observer(state: dict) -> None:
        reconcile.reconcile_host(host)

    def user(state: dict) -> None:
        vm_services.vm_delete(actor=demo.bob, vm=state["vm"])

    def check(state: dict) -> None:
        vm = state["vm"]

        def gone() -> bool:
            return not VirtualMachine.objects.filter(pk=vm.pk).exists()

        left = VirtualMachine.objects.filter(pk=vm.pk).values("phase", "desired_state")
        wait_for(gone, 20, message=f"{vm.name} was not deleted: {left.first()}")
        assert vm.domain_name not in conn.listDefinedDomains()

    race(40, setup, observer, user, check)
