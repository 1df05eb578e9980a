"""An Isotope Service's members in EndpointSlices of at most ISOTOPE_ENDPOINTS_PER_SLICE
(the manifests alone; tests/compute/kubernetes/test_services.py writes them to a real
API server): named ``<service>-isotope``, ``-isotope-2``, …, each member in one slice,
sorted so a member keeps its slice while others come and go after it."""

from __future__ import annotations

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
