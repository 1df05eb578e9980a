"""Services' members and records without a cluster: which VMs are members (running,
labels matching, at the address Isotope knows: the lease, else the fixed IP), an empty
selector selecting nothing, and the compare-and-set that keeps a sync computed from an
older selector from overwriting a newer one."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compute.backends.containers import LoadBalancerStatus
from compute.choices import NicPhase, Phase, ServicePhase
from compute.models import NetworkInterface, Service, VirtualMachine
from compute.services import load_balancers as service_services
from compute.services import networks as network_services
from tests.compute.test_api_volumes import make_vm

pytestmark = pytest.mark.unit


@pytest.fixture
def world(demo, make_host, tiny_image, fake_cluster):
    demo.host = make_host("node-a")
    return demo


def labelled_vm(demo, name: str, labels: dict, phase=Phase.RUNNING, fixed_ip=None, leases=()):
    vm = make_vm(demo, name=name, phase=phase)
    VirtualMachine.objects.filter(pk=vm.pk).update(labels=labels)
    nic = network_services.nic_create(actor=None, vm=vm, network="default", fixed_ip=fixed_ip)
    NetworkInterface.objects.filter(pk=nic.pk).update(
        phase=NicPhase.ATTACHED, addresses=list(leases)
    )
    return VirtualMachine.objects.get(pk=vm.pk)


def make_service(demo, selector=None) -> Service:
    return service_services.service_create(
        actor=None,
        tenant=demo.acme,
        name="web",
        selector=selector or {"app": "web"},
        ports=[{"port": 80}],
    )


def test_running_vms_with_every_selected_label_are_members_at_their_known_address(world):
    make_vm(world, name="first")  # the tenant's first VM brings the default network
    network = world.acme.networks.get(name="default")
    base = network.network.network_address
    fixed = str(base + 150)
    labelled_vm(world, "leased", {"app": "web", "tier": "1"}, leases=[f"{base + 140}/24"])
    labelled_vm(world, "fixed", {"app": "web"}, fixed_ip=fixed)
    labelled_vm(world, "stopped", {"app": "web"}, phase=Phase.STOPPED, leases=[f"{base + 9}/24"])
    labelled_vm(world, "other", {"app": "db"}, leases=[f"{base + 10}/24"])
    service = make_service(world)

    members = service_services._vm_members(service)
    assert [(m["name"], m["address"]) for m in members] == [
        ("fixed", fixed),
        ("leased", str(base + 140)),
    ]
    assert {m["kind"] for m in members} == {"VirtualMachine"}

    two_labels = make_service_named(world, "both", {"app": "web", "tier": "1"})
    assert [m["name"] for m in service_services._vm_members(two_labels)] == ["leased"]
    assert Service(selector={}).selects({"app": "web"}) is False

    # Each sync (every 30 s, and at each member change) reads the members' addresses
    # in one query: twice the members, the same statements.
    with CaptureQueriesContext(connection) as two:
        assert len(service_services._vm_members(service)) == 2
    for index in range(2):
        labelled_vm(world, f"more{index}", {"app": "web"}, leases=[f"{base + 20 + index}/24"])
    with CaptureQueriesContext(connection) as four:
        assert len(service_services._vm_members(service)) == 4
    assert len(four) == len(two)


def make_service_named(demo, name: str, selector: dict) -> Service:
    return service_services.service_create(
        actor=None, tenant=demo.acme, name=name, selector=selector, ports=[{"port": 80}]
    )


def test_a_sync_from_an_older_selector_does_not_overwrite_the_newer_one(world):
    service = make_service(world)
    stale = Service.objects.get(pk=service.pk)  # what a sync read at generation 1
    service_services.service_update(actor=None, service=service, selector={"app": "api"})
    member = {"kind": "Pod", "name": "p", "owner": "w", "address": "10.0.0.5", "ready": True}
    status = LoadBalancerStatus(cluster_ip="10.96.0.10")

    assert service_services.service_synced(stale, [member], status) is None
    row = Service.objects.get(pk=service.pk)
    assert row.endpoints == [] and row.phase == ServicePhase.PENDING and row.generation == 2

    recorded = service_services.service_synced(row, [member], status)
    assert recorded.endpoints == [member] and recorded.phase == ServicePhase.READY
    assert (recorded.cluster_ip, recorded.observed_generation) == ("10.96.0.10", 2)
    version = recorded.resource_version
    # The same outcome again writes nothing.
    assert service_services.service_synced(recorded, [member], status).resource_version == version


def test_a_deleted_service_keeps_no_sync_result(world):
    service = make_service(world)
    service_services.service_delete(actor=None, service=service)
    status = LoadBalancerStatus(cluster_ip="10.96.0.10")
    assert service_services.service_synced(Service.objects.get(pk=service.pk), [], status) is None
    assert Service.objects.get(pk=service.pk).phase == ServicePhase.DELETING


@pytest.mark.django_db(transaction=True)
def test_a_failed_sync_is_recorded_before_the_next_sync_of_the_service_may_run(world, pg):
    """A sync the cluster refused recorded Failed after it had let go of the service:
    a sync started in between (a member changed) could record Ready first, and the
    late Failed then stood over it until the next reconcile. The next sync now waits
    until the failure is recorded, and its own outcome comes after."""
    from compute.tasks import kubernetes as kubernetes_tasks
    from compute.tasks.locks import Busy, task_lock
    from tests.conftest import wait_for
    from tests.races import held_open, run_in_thread, waiting_on_a_lock

    service = make_service(world)  # on a cluster whose kubeconfig is not usable
    with held_open(lambda: Service.objects.select_for_update().get(pk=service.pk)) as commit:
        failing = run_in_thread(
            lambda: kubernetes_tasks.sync_service_endpoints.apply(args=(service.pk,))
        )
        wait_for(waiting_on_a_lock, 30, 0.02, message="the failure was never recorded")
        with pytest.raises(Busy), task_lock(f"isotope:service-lock:{service.pk}", 5):
            pass  # what the next sync does first
        commit()
    failing["thread"].join(30)
    assert "error" not in failing, failing
    row = Service.objects.get(pk=service.pk)
    assert row.phase == ServicePhase.FAILED
    assert row.message.startswith("The kubeconfig is not usable")
