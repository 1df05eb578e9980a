"""Security groups as NetworkPolicies on the real API server (KWOK nodes: policies are
stored, not enforced, so the objects are what is asserted): each group is an allow
policy selecting the pods labelled with it, the default-deny stays, a changed rule
changes the policy, a deleted group's policy goes, and workload pods carry the default
group's label."""

from __future__ import annotations

import pytest

from compute.backends.kubernetes import manifests
from compute.choices import Phase
from compute.models import Workload
from compute.services import security_groups as group_services
from compute.services import workloads as workload_services
from compute.services.clusters import security_policies_sync, tenant_provision
from tests.compute.kubernetes.test_workloads import RUNNING, phase_of, running_pods
from tests.conftest import wait_for

pytestmark = pytest.mark.kubernetes


def policies(kube, namespace: str) -> dict:
    return {p.metadata.name: p for p in kube.net.list_namespaced_network_policy(namespace).items}


def test_a_tenants_groups_become_network_policies_beside_the_default_deny(
    make_tenant, cluster, kube
):
    tenant = make_tenant()
    tenant_provision(tenant=tenant, cluster=cluster)
    group_services.default_group(tenant)
    web = group_services.group_create(
        actor=None,
        tenant=tenant,
        name="web",
        rules=[
            {
                "direction": "ingress",
                "protocol": "tcp",
                "port_min": 8000,
                "port_max": 8080,
                "remote_cidr": "10.0.0.0/8",
            },
            {"direction": "ingress", "protocol": "udp", "port_min": 53, "remote_group": "default"},
            {"direction": "ingress", "protocol": "icmp", "remote_cidr": "0.0.0.0/0"},
            {"direction": "egress", "protocol": "any", "remote_group": "web"},
        ],
    )
    assert security_policies_sync(tenant=tenant, cluster=cluster) == ["sg-default", "sg-web"]

    found = policies(kube, tenant.namespace)
    assert {"default-deny", "allow-same-namespace", "sg-default", "sg-web"} == set(found)
    deny = found["default-deny"].spec
    assert deny.pod_selector.match_labels is None and deny.policy_types == ["Ingress", "Egress"]

    policy = found["sg-web"]
    assert policy.metadata.labels[manifests.GROUP_POLICY_LABEL] == "web"
    (selector,) = policy.spec.pod_selector.match_expressions
    assert (selector.key, selector.operator) == ("securitygroup.isotope.dev/web", "Exists")
    first, second = policy.spec.ingress  # the ICMP rule has no NetworkPolicy form
    assert first._from[0].ip_block.cidr == "10.0.0.0/8"
    assert [(p.protocol, p.port, p.end_port) for p in first.ports] == [("TCP", 8000, 8080)]
    peer = second._from[0].pod_selector.match_expressions[0]
    assert peer.key == "securitygroup.isotope.dev/default"
    assert [(p.protocol, p.port) for p in second.ports] == [("UDP", 53)]
    (egress,) = policy.spec.egress
    assert egress.to[0].pod_selector.match_expressions[0].key == "securitygroup.isotope.dev/web"
    assert egress.ports is None  # any protocol, any port

    default = found["sg-default"].spec
    assert default.ingress[0]._from[0].pod_selector.match_expressions[0].key == (
        "securitygroup.isotope.dev/default"
    )
    assert default.egress[0].to[0].ip_block.cidr == "0.0.0.0/0"

    # A rule removed is gone from the policy; a deleted group's policy goes.
    rule = web.rules.get(protocol="udp")
    group_services.rule_remove(actor=None, group=web, rule_id=rule.pk)
    security_policies_sync(tenant=tenant, cluster=cluster)
    assert len(policies(kube, tenant.namespace)["sg-web"].spec.ingress) == 1
    group_services.rule_remove(actor=None, group=web, rule_id=web.rules.get(direction="egress").pk)
    group_services.group_delete(actor=None, group=web)
    assert security_policies_sync(tenant=tenant, cluster=cluster) == ["sg-default"]
    assert set(policies(kube, tenant.namespace)) == {
        "default-deny",
        "allow-same-namespace",
        "sg-default",
    }

    # Provisioning again (the reconciler's repair) brings a deleted group policy back.
    kube.net.delete_namespaced_network_policy("sg-default", tenant.namespace)
    tenant_provision(tenant=tenant, cluster=cluster)
    assert "sg-default" in policies(kube, tenant.namespace)


def test_workload_pods_carry_the_default_groups_label():
    from compute.backends.containers import WorkloadSpec

    spec = WorkloadSpec(
        tenant="acme",
        namespace="iso-acme",
        name="api",
        kind="Deployment",
        image="nginx",
        replicas=1,
        cpu_request_m=100,
        cpu_limit_m=200,
        memory_request=64 * 1024 * 1024,
        memory_limit=128 * 1024 * 1024,
    )
    deployment = manifests.deployment(spec)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["securitygroup.isotope.dev/default"] == "member"
    assert deployment["spec"]["selector"] == {"matchLabels": {manifests.WORKLOAD_LABEL: "api"}}


def _group_labels(pod) -> set[str]:
    prefix = manifests.GROUP_LABEL_PREFIX
    return {k[len(prefix) :] for k in (pod.metadata.labels or {}) if k.startswith(prefix)}


def _selected(kube, namespace: str, group: str) -> set[str]:
    """The pods the group's NetworkPolicy selects, asked of the API server with the
    policy's own selector."""
    policy = kube.net.read_namespaced_network_policy(f"sg-{group}", namespace)
    (expression,) = policy.spec.pod_selector.match_expressions
    assert expression.operator == "Exists"
    pods = kube.core.list_namespaced_pod(namespace, label_selector=expression.key).items
    return {p.metadata.name for p in pods if p.metadata.deletion_timestamp is None}


def test_a_workloads_pods_join_the_groups_it_names_and_move_when_they_change(
    make_tenant, kube, celery_worker, watcher
):
    tenant = make_tenant()
    group_services.default_group(tenant)
    for name in ("web", "db"):
        group_services.group_create(
            actor=None,
            tenant=tenant,
            name=name,
            rules=[
                {"direction": "ingress", "protocol": "tcp", "port_min": 80, "remote_group": name}
            ],
        )
    front = workload_services.workload_create(
        actor=None,
        tenant=tenant,
        name="front",
        image="nginx:1.27",
        replicas=2,
        security_groups=["web"],
    )
    single = workload_services.workload_create(
        actor=None, tenant=tenant, name="single", image="nginx:1.27", kind="Pod"
    )
    wait_for(lambda: phase_of("front", tenant) == (Phase.RUNNING, 2, 2), RUNNING, 0.2)
    wait_for(lambda: phase_of("single", tenant) == (Phase.RUNNING, 1, 1), RUNNING, 0.2)
    pods = running_pods(kube, tenant, "front")
    assert [_group_labels(p) for p in pods] == [{"web"}, {"web"}]  # not default
    (bare,) = running_pods(kube, tenant, "single")
    assert _group_labels(bare) == {"default"}
    wait_for(
        lambda: "sg-web" in policies(kube, tenant.namespace), RUNNING, 0.2, message="no sg-web"
    )
    assert _selected(kube, tenant.namespace, "web") == {p.metadata.name for p in pods}

    # The Deployment's pods roll into db (and out of web).
    workload_services.workload_groups_set(
        actor=None, workload=Workload.objects.get(pk=front.pk), groups=["db"]
    )
    before = {p.metadata.name for p in pods}

    def rolled():
        now = running_pods(kube, tenant, "front")
        return (
            len(now) == 2
            and not ({p.metadata.name for p in now} & before)
            and all(_group_labels(p) == {"db"} for p in now)
            and phase_of("front", tenant)[0] == Phase.RUNNING
        )

    wait_for(rolled, RUNNING, 0.2, message="the pods did not roll into the db group")
    found = kube.apps.read_namespaced_deployment("front", tenant.namespace)
    assert found.spec.selector.match_labels == {manifests.WORKLOAD_LABEL: "front"}

    # A bare pod is patched in place: into web and db, out of default.
    workload_services.workload_groups_set(
        actor=None, workload=Workload.objects.get(pk=single.pk), groups=["web", "db"]
    )

    def patched():
        pod = kube.core.read_namespaced_pod(bare.metadata.name, tenant.namespace)
        return pod if _group_labels(pod) == {"web", "db"} else None

    pod = wait_for(patched, RUNNING, 0.2, message="the bare pod's group labels were not patched")
    assert pod.metadata.uid == bare.metadata.uid
    assert bare.metadata.name in _selected(kube, tenant.namespace, "web")
    assert bare.metadata.name in _selected(kube, tenant.namespace, "db")
