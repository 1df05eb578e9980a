"""Tenant namespaces on the real API server: exactly the objects, idempotent re-runs,
drift repaired by the reconciler and reported, the quota mirrored on change."""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException

from compute.backends.kubernetes import manifests
from compute.models import TenantNamespace
from compute.services.clusters import tenant_provision
from compute.tasks import kubernetes as tasks
from monitoring.models import Event
from tenants import services as tenant_services

pytestmark = pytest.mark.kubernetes


def objects(kube, namespace: str) -> dict[str, dict[str, str]]:
    """Isotope's objects in the namespace: kind → {name: resourceVersion}."""
    selector = f"{manifests.MANAGED_BY}={manifests.MANAGER}"

    def names(items):
        return {i.metadata.name: i.metadata.resource_version for i in items}

    return {
        "Namespace": {namespace: kube.core.read_namespace(namespace).metadata.resource_version},
        "ResourceQuota": names(kube.core.list_namespaced_resource_quota(namespace).items),
        "LimitRange": names(kube.core.list_namespaced_limit_range(namespace).items),
        "NetworkPolicy": names(kube.net.list_namespaced_network_policy(namespace).items),
        "ServiceAccount": names(
            kube.core.list_namespaced_service_account(namespace, label_selector=selector).items
        ),
        "RoleBinding": names(kube.rbac.list_namespaced_role_binding(namespace).items),
    }


def test_provisioning_creates_exactly_the_namespace_objects(make_tenant, cluster, kube):
    tenant = make_tenant(quota={"cpu": 4, "memory": 8192, "pods": 20})
    report = tenant_provision(tenant=tenant, cluster=cluster)

    assert len(report.created) == 7 and not report.repaired
    found = objects(kube, tenant.namespace)
    assert {kind: set(names) for kind, names in found.items()} == {
        "Namespace": {tenant.namespace},
        "ResourceQuota": {"isotope-quota"},
        "LimitRange": {"isotope-defaults"},
        "NetworkPolicy": {"default-deny", "allow-same-namespace"},
        "ServiceAccount": {"isotope-workload"},
        "RoleBinding": {"isotope-workload-view"},
    }
    ns = kube.core.read_namespace(tenant.namespace)
    assert ns.metadata.labels[manifests.TENANT_LABEL] == tenant.slug
    assert ns.metadata.labels[manifests.MANAGED_BY] == "isotope"
    quota = kube.core.read_namespaced_resource_quota("isotope-quota", tenant.namespace)
    assert quota.spec.hard == {
        "requests.cpu": "4",
        "requests.memory": "8Gi",
        "limits.cpu": "8",
        "limits.memory": "16Gi",
        "count/pods": "20",
        "requests.storage": "200Gi",  # the tenant's one storage limit (VM disks share it)
    }
    deny = kube.net.read_namespaced_network_policy("default-deny", tenant.namespace)
    assert deny.spec.pod_selector.match_labels is None
    assert sorted(deny.spec.policy_types) == ["Egress", "Ingress"] and not deny.spec.ingress
    row = TenantNamespace.objects.get(tenant=tenant, cluster=cluster)
    assert row.ready and row.provisioned
    assert Event.objects.filter(tenant=tenant, kind="namespace", reason="Provisioned").count() == 1


def test_provisioning_again_changes_nothing(make_tenant, cluster, kube):
    tenant = make_tenant()
    tenant_provision(tenant=tenant, cluster=cluster)
    before = objects(kube, tenant.namespace)

    provisioned = TenantNamespace.objects.get(tenant=tenant, cluster=cluster).provisioned

    report = tenant_provision(tenant=tenant, cluster=cluster)

    assert not report.created and not report.repaired and len(report.unchanged) == 7
    assert objects(kube, tenant.namespace) == before  # every resourceVersion unchanged
    assert not Event.objects.filter(tenant=tenant, reason="DriftRepaired").exists()
    # The row is not written again (the reconciler does this every 30 s per tenant)...
    row = TenantNamespace.objects.get(tenant=tenant, cluster=cluster)
    assert (row.ready, row.message, row.provisioned) == (True, "", provisioned)
    # ... unless it is not ready: a failure recorded meanwhile is cleared.
    TenantNamespace.objects.filter(pk=row.pk).update(ready=False, message="API down")
    tenant_provision(tenant=tenant, cluster=cluster, row=row)  # the caller's older copy
    row = TenantNamespace.objects.get(pk=row.pk)
    assert row.ready and row.message == "" and row.provisioned > provisioned


def test_a_network_policy_deleted_behind_our_back_is_repaired_and_reported(
    make_tenant, cluster, kube
):
    tenant = make_tenant()
    tenant_provision(tenant=tenant, cluster=cluster)
    kube.net.delete_namespaced_network_policy("default-deny", tenant.namespace)
    with pytest.raises(ApiException):
        kube.net.read_namespaced_network_policy("default-deny", tenant.namespace)

    counts = tasks.cluster_reconcile(cluster.pk)

    assert counts["repaired"] >= 1
    assert kube.net.read_namespaced_network_policy("default-deny", tenant.namespace)
    event = Event.objects.get(tenant=tenant, kind="namespace", reason="DriftRepaired")
    assert event.type == "Warning"
    assert "NetworkPolicy/default-deny" in event.message


def test_an_edited_quota_is_reverted_and_a_new_tenant_limit_is_mirrored(make_tenant, cluster, kube):
    tenant = make_tenant(quota={"cpu": 4, "pods": 20})
    tenant_provision(tenant=tenant, cluster=cluster)
    kube.core.patch_namespaced_resource_quota(
        "isotope-quota", tenant.namespace, {"spec": {"hard": {"count/pods": "999"}}}
    )
    report = tenant_provision(tenant=tenant, cluster=cluster)
    assert report.repaired == ["ResourceQuota/isotope-quota"]

    tenant_services.quota_set(actor=None, tenant=tenant, limits={"cpu": 6, "pods": 30})
    tasks.tenant_provision(tenant.pk)  # what quota_changed enqueues

    hard = kube.core.read_namespaced_resource_quota("isotope-quota", tenant.namespace).spec.hard
    assert hard["requests.cpu"] == "6" and hard["count/pods"] == "30"
