"""Security groups as NetworkPolicies on the real API server (KWOK nodes: policies are
stored, not enforced, so the objects are what is asserted): each group is an allow
policy selecting the pods labelled with it, the default-deny stays, a changed rule
changes the policy, a deleted group's policy goes, and workload pods carry the default
group's label."""

from __future__ import annotations

import pytest

from compute.backends.kubernetes import manifests
from compute.services import security_groups as group_services
from compute.services.clusters import security_policies_sync, tenant_provision

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
