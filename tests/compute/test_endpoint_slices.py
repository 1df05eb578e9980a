"""An Isotope Service's members in EndpointSlices of at most ISOTOPE_ENDPOINTS_PER_SLICE
(the manifests alone; tests/compute/kubernetes/test_services.py writes them to a real
API server): named ``<service>-isotope``, ``-isotope-2``, …, each member in one slice,
sorted so a member keeps its slice while others come and go after it."""

from __future__ import annotations

import dataclasses

import pytest

from compute.backends.containers import Endpoint, LoadBalancerSpec, ServicePort
from compute.backends.kubernetes import manifests

pytestmark = pytest.mark.unit


def spec(members: int, per_slice: int = 100) -> LoadBalancerSpec:
    return LoadBalancerSpec(
        tenant="acme",
        namespace="t-acme",
        name="web",
        service_type="ClusterIP",
        ports=(ServicePort(name="http", protocol="TCP", port=80, target_port=8080),),
        endpoints=tuple(
            Endpoint(
                kind="Pod", name=f"web-{n:04d}", address=f"10.0.{n // 250}.{n % 250}", ready=True
            )
            for n in reversed(range(members))
        ),
        endpoints_per_slice=per_slice,
    )


def names(slices: list[dict]) -> list[list[str]]:
    return [[e["targetRef"]["name"] for e in s["endpoints"]] for s in slices]


def test_members_are_split_into_slices_of_the_configured_size():
    slices = manifests.endpoint_slices(spec(250))
    assert [s["metadata"]["name"] for s in slices] == [
        "web-isotope",
        "web-isotope-2",
        "web-isotope-3",
    ]
    assert [len(s["endpoints"]) for s in slices] == [100, 100, 50]
    everyone = [name for chunk in names(slices) for name in chunk]
    assert everyone == sorted(everyone) and len(set(everyone)) == 250
    for found in slices:
        labels = found["metadata"]["labels"]
        assert labels[manifests.SERVICE_NAME_LABEL] == "web"
        assert labels[manifests.SLICE_MANAGED_BY] == manifests.SLICE_MANAGER
        assert found["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    assert manifests.endpoint_slice_selector("web") == (
        f"{manifests.SERVICE_NAME_LABEL}=web,{manifests.SLICE_MANAGED_BY}={manifests.SLICE_MANAGER}"
    )


def test_no_members_is_one_empty_slice_and_a_member_keeps_its_slice():
    (empty,) = manifests.endpoint_slices(spec(0))
    assert empty["metadata"]["name"] == "web-isotope" and empty["endpoints"] == []
    before = names(manifests.endpoint_slices(spec(5, per_slice=2)))
    after = names(manifests.endpoint_slices(spec(6, per_slice=2)))  # web-0005 comes last
    assert after[:3] == before[:2] + [before[2] + ["web-0005"]]


def test_named_target_ports_group_members_by_the_numbers_they_resolve_to():
    """A slice has one port list, so pods whose named port has different numbers are in
    different slices; a VM (no container ports) carries only the numbered port."""
    named = LoadBalancerSpec(
        tenant="acme",
        namespace="t-acme",
        name="web",
        service_type="ClusterIP",
        ports=(
            ServicePort(name="http", protocol="TCP", port=80, target_port="web"),
            ServicePort(name="admin", protocol="TCP", port=81, target_port=9000),
        ),
        endpoints=(
            Endpoint("Pod", "a-1", "10.0.0.1", True, target_ports=(8080, 9000)),
            Endpoint("Pod", "b-1", "10.0.0.2", True, target_ports=(8081, 9000)),
            Endpoint("Pod", "a-2", "10.0.0.3", False, target_ports=(8080, 9000)),
            Endpoint("VirtualMachine", "vm-1", "10.0.1.5", True, target_ports=(None, 9000)),
        ),
    )
    slices = manifests.endpoint_slices(named)
    assert [s["metadata"]["name"] for s in slices] == [
        "web-isotope",
        "web-isotope-2",
        "web-isotope-3",
    ]
    shown = [
        (
            [(p["name"], p["port"]) for p in s["ports"]],
            [e.get("hostname") or e["targetRef"]["name"] for e in s["endpoints"]],
        )
        for s in slices
    ]
    assert shown == [
        ([("admin", 9000)], ["vm-1"]),
        ([("http", 8080), ("admin", 9000)], ["a-1", "a-2"]),
        ([("http", 8081), ("admin", 9000)], ["b-1"]),
    ]
    # No members: one empty slice with the numbered ports only.
    (empty,) = manifests.endpoint_slices(dataclasses.replace(named, endpoints=()))
    assert empty["ports"] == [{"name": "admin", "protocol": "TCP", "port": 9000}]
    assert empty["endpoints"] == []
