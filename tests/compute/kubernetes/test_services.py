"""Isotope Services on the real API server (KWOK nodes), with a VM on libvirt's test
driver and a real Celery worker and cluster watch: a Service selecting ``app=web`` is a
selector-less Kubernetes Service whose EndpointSlice lists a ready pod's address and a
running VM's address, drops the VM when it stops, and follows a changed selector; a
deleted Service's objects go from the cluster. A Service's type changes ClusterIP →
NodePort → ClusterIP in place (same Kubernetes Service, same cluster IP; node ports
allocated, then gone). Members beyond ISOTOPE_ENDPOINTS_PER_SLICE go into more slices,
which go again when the members shrink. A running VM relabelled from app=web to app=api
leaves web's slice and joins api's at the same address."""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException

from compute.backends.kubernetes import manifests
from compute.choices import Phase, ServicePhase
from compute.models import Service, VirtualMachine, Workload
from compute.services import load_balancers as service_services
from compute.services import networks as network_services
from compute.services import vms as vm_services
from compute.services import workloads as workload_services
from monitoring.models import Event
from tests.conftest import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.django_db(transaction=True)]

SLOW = 60


def endpoint_slice(kube, tenant, name: str):
    from kubernetes import client

    api = client.DiscoveryV1Api(kube.api)
    return api.read_namespaced_endpoint_slice(f"{name}-isotope", tenant.namespace)


def slice_members(kube, tenant, name: str) -> dict:
    """``{name: (address, ready)}``: a pod named by its targetRef, a VM by hostname."""
    try:
        found = endpoint_slice(kube, tenant, name)
    except ApiException:
        return {}
    return {
        (e.target_ref.name if e.target_ref else e.hostname): (e.addresses[0], e.conditions.ready)
        for e in found.endpoints or []
    }


def workload(tenant, name: str, labels: dict, ports=None) -> None:
    workload_services.workload_create(
        actor=None,
        tenant=tenant,
        name=name,
        image="registry.invalid/isotope/web:1",
        replicas=1,
        cpu_request="100m",
        memory_request="32Mi",
        labels=labels,
        ports=ports,
    )


def web_members(tenant, cidr: str, ports=None):
    """A VM labelled app=web on a network of ``tenant`` (its address is the lease the
    test driver answers) and a one-pod workload labelled app=web (with container
    ``ports``); returns the VM."""
    network_services.network_create(actor=None, tenant=tenant, name="lab", cidr=cidr)
    vm = vm_services.vm_create(
        actor=None,
        tenant=tenant,
        name="vm-web",
        image="tiny",
        vcpus=1,
        memory_mib=128,
        labels={"app": "web"},
        networks=["lab"],
    )
    workload(tenant, "pods-web", {"app": "web"}, ports)
    return vm


def test_a_service_lists_a_ready_pod_and_a_running_vm_and_drops_the_vm_when_it_stops(
    make_tenant, kube, make_host, tiny_image, celery_worker, watcher
):
    tenant = make_tenant()
    make_host("node-a")
    vm = web_members(tenant, "10.77.0.0/24")
    workload(tenant, "other", {"app": "db"})
    service = service_services.service_create(
        actor=None,
        tenant=tenant,
        name="web",
        selector={"app": "web"},
        ports=[{"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080}],
        service_type="NodePort",
    )

    def both() -> dict | None:
        members = slice_members(kube, tenant, "web")
        kinds = {name.split("-")[0] for name in members}
        return members if kinds == {"pods", "vm"} else None

    members = wait_for(both, SLOW, 0.3, message="the slice never listed a pod and the VM")
    vm = VirtualMachine.objects.get(pk=vm.pk)
    assert vm.phase == Phase.RUNNING
    (pod_name,) = [n for n in members if n.startswith("pods-web-")]
    pod = kube.core.read_namespaced_pod(pod_name, tenant.namespace)
    assert members[pod_name] == (pod.status.pod_ip, True)
    vm_address = service_services.vm_addresses(vm)[0]
    assert members["vm-web"][0] == vm_address
    assert vm_address.startswith("10.77.0.")  # the lease the host reported
    assert not any(name.startswith("other-") for name in members)

    # The Kubernetes Service has no selector; the slice is Isotope's and names it.
    k8s_service = kube.core.read_namespaced_service("web", tenant.namespace)
    assert k8s_service.spec.selector is None
    assert k8s_service.spec.type == "NodePort"
    assert [(p.name, p.port, p.target_port) for p in k8s_service.spec.ports] == [("http", 80, 8080)]
    found = endpoint_slice(kube, tenant, "web")
    assert found.metadata.labels[manifests.SERVICE_NAME_LABEL] == "web"
    assert found.metadata.labels[manifests.SLICE_MANAGED_BY] == manifests.SLICE_MANAGER
    assert found.address_type == "IPv4"
    assert [(p.name, p.port, p.protocol) for p in found.ports] == [("http", 8080, "TCP")]
    pod_endpoint = next(e for e in found.endpoints if e.target_ref)
    assert (pod_endpoint.target_ref.kind, pod_endpoint.target_ref.name) == ("Pod", pod_name)

    # The portal shows the same members, and what the cluster allocated.
    def recorded() -> Service | None:
        found = Service.objects.get(pk=service.pk)
        return found if len(found.endpoints) == 2 else None

    service = wait_for(recorded, SLOW, 0.2, message="the portal did not record both members")
    assert service.phase == ServicePhase.READY and service.cluster_ip
    assert service.node_ports["http"] == k8s_service.spec.ports[0].node_port
    assert {(m["kind"], m["name"]) for m in service.endpoints} == {
        ("Pod", pod_name),
        ("VirtualMachine", "vm-web"),
    }

    # The VM stops: its endpoint goes; the pod's stays.
    vm_services.vm_action(actor=None, vm=vm, action="stop")
    wait_for(
        lambda: set(slice_members(kube, tenant, "web")) == {pod_name},
        SLOW,
        0.3,
        message="the stopped VM stayed in the slice",
    )
    assert Event.objects.filter(tenant=tenant, name="web", reason="EndpointsChanged").exists()

    # A changed selector: only the other workload's pod is a member.
    service_services.service_update(actor=None, service=service, selector={"app": "db"})
    wait_for(
        lambda: [n.split("-")[0] for n in slice_members(kube, tenant, "web")] == ["other"],
        SLOW,
        0.3,
        message="the slice did not follow the selector",
    )

    # Deleted: the Service and its slice go, then the row.
    service_services.service_delete(actor=None, service=Service.objects.get(pk=service.pk))
    wait_for(lambda: not Service.objects.filter(pk=service.pk).exists(), SLOW, 0.3)
    with pytest.raises(ApiException) as gone:
        kube.core.read_namespaced_service("web", tenant.namespace)
    assert gone.value.status == 404
    assert slice_members(kube, tenant, "web") == {}


def test_a_services_type_and_ports_change_in_place_on_the_cluster(make_tenant, kube, celery_worker):
    tenant = make_tenant()
    service = service_services.service_create(
        actor=None,
        tenant=tenant,
        name="web",
        selector={"app": "web"},
        ports=[{"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080}],
    )

    def written(generation: int):
        def check() -> Service | None:
            found = Service.objects.get(pk=service.pk)
            done = found.observed_generation == generation and found.phase == ServicePhase.READY
            return found if done else None

        return check

    service = wait_for(written(1), SLOW, 0.2, message="the Service was never written")
    first = kube.core.read_namespaced_service("web", tenant.namespace)
    assert first.spec.type == "ClusterIP" and service.node_ports == {}
    assert service.cluster_ip == first.spec.cluster_ip

    service_services.service_update(
        actor=None,
        service=service,
        service_type="NodePort",
        ports=[{"name": "http", "protocol": "TCP", "port": 81, "target_port": 8081}],
    )
    service = wait_for(written(2), SLOW, 0.2, message="the NodePort change was never written")
    found = kube.core.read_namespaced_service("web", tenant.namespace)
    assert found.metadata.uid == first.metadata.uid  # changed in place, not made again
    assert found.spec.type == "NodePort" and found.spec.cluster_ip == first.spec.cluster_ip
    (port,) = found.spec.ports
    assert (port.name, port.port, port.target_port) == ("http", 81, 8081)
    assert 30000 <= port.node_port <= 32767
    assert service.node_ports == {"http": port.node_port}
    assert service.cluster_ip == first.spec.cluster_ip

    service_services.service_update(actor=None, service=service, service_type="ClusterIP")
    service = wait_for(written(3), SLOW, 0.2, message="the ClusterIP change was never written")
    found = kube.core.read_namespaced_service("web", tenant.namespace)
    assert found.metadata.uid == first.metadata.uid
    assert found.spec.type == "ClusterIP" and found.spec.ports[0].node_port is None
    assert service.node_ports == {}
    changes = Event.objects.filter(tenant=tenant, name="web", reason="SpecChanged")
    assert [e.message for e in changes.order_by("pk")] == [
        "ports and type changed (generation 2).",
        "type changed (generation 3).",
    ]


def web_pods(tenant, *, replicas: int, ports=None) -> None:
    """A workload ``pods-web`` labelled app=web with small requests."""
    workload_services.workload_create(
        actor=None,
        tenant=tenant,
        name="pods-web",
        image="registry.invalid/isotope/web:1",
        replicas=replicas,
        cpu_request="10m",
        memory_request="16Mi",
        labels={"app": "web"},
        ports=ports,
    )


def slice_ports(kube, tenant, name: str) -> dict[str, tuple[list, list]]:
    """Every slice of the Service: ``{slice: ([(port name, number)], [member, …])}``
    (a pod named by its targetRef, a VM by its hostname)."""
    from kubernetes import client

    found = client.DiscoveryV1Api(kube.api).list_namespaced_endpoint_slice(
        tenant.namespace, label_selector=manifests.endpoint_slice_selector(name)
    )
    return {
        s.metadata.name: (
            [(p.name, p.port) for p in s.ports or []],
            [e.hostname or e.target_ref.name for e in s.endpoints or []],
        )
        for s in found.items
    }


def slice_names(kube, tenant, name: str) -> dict[str, list[str]]:
    """Every slice Isotope keeps for the Service: ``{slice: [member, …]}``."""
    from kubernetes import client

    found = client.DiscoveryV1Api(kube.api).list_namespaced_endpoint_slice(
        tenant.namespace, label_selector=manifests.endpoint_slice_selector(name)
    )
    return {
        s.metadata.name: sorted(e.target_ref.name for e in s.endpoints or []) for s in found.items
    }


def test_members_beyond_a_slice_go_into_more_slices_and_the_extra_ones_go_again(
    make_tenant, kube, celery_worker, watcher, settings
):
    settings.ISOTOPE_ENDPOINTS_PER_SLICE = 2
    tenant = make_tenant()
    web_pods(tenant, replicas=3)
    service = service_services.service_create(
        actor=None,
        tenant=tenant,
        name="web",
        selector={"app": "web"},
        ports=[{"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080}],
    )

    def spread() -> dict | None:
        slices = slice_names(kube, tenant, "web")
        return slices if sum(len(m) for m in slices.values()) == 3 else None

    slices = wait_for(spread, SLOW, 0.3, message="the three pods were never listed")
    assert sorted(slices) == ["web-isotope", "web-isotope-2"]
    assert [len(slices[n]) for n in ("web-isotope", "web-isotope-2")] == [2, 1]
    pods = {p.metadata.name for p in kube.core.list_namespaced_pod(tenant.namespace).items}
    assert {m for members in slices.values() for m in members} == pods

    # Down to one pod: the second slice goes, the first lists the one left.
    workload_services.workload_scale(
        actor=None, workload=Workload.objects.get(tenant=tenant, name="pods-web"), replicas=1
    )
    wait_for(
        lambda: [len(m) for m in slice_names(kube, tenant, "web").values()] == [1],
        SLOW,
        0.3,
        message="the extra slice stayed",
    )
    # Deleted: every slice goes with the Service.
    service_services.service_delete(actor=None, service=Service.objects.get(pk=service.pk))
    wait_for(lambda: not Service.objects.filter(pk=service.pk).exists(), SLOW, 0.3)
    assert slice_names(kube, tenant, "web") == {}


def test_a_relabelled_vm_leaves_one_services_slice_and_joins_anothers(
    make_tenant, kube, make_host, tiny_image, celery_worker, watcher
):
    tenant = make_tenant()
    make_host("node-a")
    network_services.network_create(actor=None, tenant=tenant, name="lab", cidr="10.78.0.0/24")
    vm = vm_services.vm_create(
        actor=None,
        tenant=tenant,
        name="vm-moved",
        image="tiny",
        vcpus=1,
        memory_mib=128,
        labels={"app": "web"},
        networks=["lab"],
    )
    for name, app in (("web", "web"), ("api", "api")):
        service_services.service_create(
            actor=None, tenant=tenant, name=name, selector={"app": app}, ports=[{"port": 80}]
        )
    wait_for(
        lambda: list(slice_members(kube, tenant, "web")) == ["vm-moved"],
        SLOW,
        0.3,
        message="the VM never appeared in web's slice",
    )
    address = slice_members(kube, tenant, "web")["vm-moved"][0]
    assert address.startswith("10.78.0.")
    assert slice_members(kube, tenant, "api") == {}

    # Relabelled while it runs: out of web's slice, into api's, at the same address.
    vm_services.vm_relabel(
        actor=None, vm=VirtualMachine.objects.get(pk=vm.pk), labels={"app": "api"}
    )
    wait_for(
        lambda: (
            list(slice_members(kube, tenant, "api")) == ["vm-moved"]
            and slice_members(kube, tenant, "web") == {}
        ),
        SLOW,
        0.3,
        message="the relabelled VM did not move from web's slice to api's",
    )
    assert slice_members(kube, tenant, "api")["vm-moved"][0] == address
    assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING
    web = Service.objects.get(tenant=tenant, name="web")
    wait_for(lambda: Service.objects.get(pk=web.pk).endpoints == [], SLOW, 0.2)


def test_a_named_target_port_resolves_from_the_pods_container_ports_and_skips_the_vm(
    make_tenant, kube, make_host, tiny_image, celery_worker, watcher
):
    """targetPort ``p8080`` is the pod's container port of that name (Isotope names a
    workload's ports ``p<number>``): the pod's slice carries port 8080 for it. A VM has
    no container ports: it is listed in its own slice with the numbered port only."""
    tenant = make_tenant()
    make_host("node-a")
    web_members(tenant, "10.79.0.0/24", ports=[8080])
    service = service_services.service_create(
        actor=None,
        tenant=tenant,
        name="web",
        selector={"app": "web"},
        ports=[
            {"name": "http", "protocol": "TCP", "port": 80, "target_port": "p8080"},
            {"name": "admin", "protocol": "TCP", "port": 81, "target_port": "9000"},
        ],
    )

    def slices() -> dict | None:
        shown = slice_ports(kube, tenant, "web")
        return shown if sum(len(m) for _, m in shown.values()) == 2 else None

    shown = wait_for(slices, SLOW, 0.3, message="the pod and the VM were never listed")
    (pod_name,) = [p.metadata.name for p in kube.core.list_namespaced_pod(tenant.namespace).items]
    assert shown == {
        "web-isotope": ([("admin", 9000)], ["vm-web"]),
        "web-isotope-2": ([("http", 8080), ("admin", 9000)], [pod_name]),
    }
    k8s_service = kube.core.read_namespaced_service("web", tenant.namespace)
    assert [(p.name, p.target_port) for p in k8s_service.spec.ports] == [
        ("http", "p8080"),
        ("admin", 9000),
    ]

    # Only the named port left: the VM serves none of the Service's ports and goes.
    service_services.service_update(
        actor=None,
        service=Service.objects.get(pk=service.pk),
        ports=[{"name": "http", "protocol": "TCP", "port": 80, "target_port": "p8080"}],
    )
    wait_for(
        lambda: slice_ports(kube, tenant, "web") == {"web-isotope": ([("http", 8080)], [pod_name])},
        SLOW,
        0.3,
        message="the VM stayed a member of a Service whose only port is named",
    )
    recorded = wait_for(
        lambda: (
            (found := Service.objects.get(pk=service.pk)).observed_generation == found.generation
            and found
        ),
        SLOW,
        0.2,
    )
    assert [(m["kind"], m["targetPorts"]) for m in recorded.endpoints] == [("Pod", [8080])]
