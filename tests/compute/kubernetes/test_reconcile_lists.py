"""The reconcile pass on the real API server lists each kind of Isotope's objects once
and calls the API only for what is not in place: a pass over tenants whose objects are
all there makes the same few reads whatever their number; a deleted or edited object is
repaired (with its Warning event) while the other tenants cost no call; a deleted
Deployment is re-applied and an intact one is not touched; a list the API server
refuses never counts as "missing"; long lists are read page by page.

Requests are counted where the Kubernetes client sends them (``ApiClient.call_api``),
passed through to the real API server.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from compute.backends.containers import GroupPolicySpec
from compute.backends.kubernetes import backend as k8s_backend
from compute.backends.kubernetes import manifests
from compute.services import security_groups as group_services
from compute.services import workloads as workload_services
from compute.services.clusters import (
    cluster_backend,
    cluster_kubeconfig,
    cluster_set_kubeconfig,
    tenant_provision,
    tenant_spec,
)
from compute.tasks import kubernetes as tasks
from compute.texts import clusters as texts
from monitoring.models import Event

pytestmark = pytest.mark.kubernetes

WRITES = {"PATCH", "POST", "PUT", "DELETE"}


@pytest.fixture
def api_calls(monkeypatch):
    """``api_calls()``: a list that records each request the Kubernetes clients send
    from now on as ``(method, path, query, status)`` (status None: answered 2xx)."""
    real = k8s.ApiClient.call_api

    def start() -> list[list]:
        calls: list[list] = []

        def counted(self, resource_path, method, *args, **kwargs):
            query = kwargs.get("query_params") or (args[1] if len(args) > 1 else None) or []
            record = [method, resource_path, dict(query), None]
            calls.append(record)
            try:
                return real(self, resource_path, method, *args, **kwargs)
            except ApiException as error:
                record[3] = error.status
                raise

        monkeypatch.setattr(k8s.ApiClient, "call_api", counted)
        return calls

    return start


def provisioned(make_tenant, cluster, count: int) -> list:
    """``count`` tenants with a security group each, their objects all in place."""
    tenants = []
    for _ in range(count):
        tenant = make_tenant()
        group_services.default_group(tenant)
        tenant_provision(tenant=tenant, cluster=cluster)
        tenants.append(tenant)
    return tenants


def drift_reported(tenant, cluster, text: str, **objects: str) -> None:
    """The tenant has exactly one DriftRepaired event of its namespace, a Warning that
    says ``text`` about ``objects`` (``created=``/``repaired=``)."""
    event = Event.objects.get(tenant=tenant, kind="namespace", reason="DriftRepaired")
    assert event.type == "Warning"
    assert event.message == text % {
        "namespace": tenant.namespace,
        "cluster": cluster.name,
        **objects,
    }


def touching(calls, namespace: str) -> list:
    return [c for c in calls if f"/namespaces/{namespace}/" in c[1] or c[1].endswith(namespace)]


def test_a_pass_over_tenants_in_place_makes_the_same_few_reads_whatever_their_number(
    make_tenant, cluster, api_calls
):
    tenants = provisioned(make_tenant, cluster, 2)

    def one_pass():
        calls = api_calls()
        with CaptureQueriesContext(connection) as queries:
            counts = tasks.cluster_reconcile(cluster.pk)
        reads = [
            q["sql"]
            for q in queries.captured_queries
            if '"tenants_quota"' in q["sql"] or '"compute_securitygroup' in q["sql"]
        ]
        return counts, [tuple(c) for c in calls], reads

    counts, few, few_reads = one_pass()
    assert (counts["namespaces"], counts["repaired"]) == (2, 0)

    tenants += provisioned(make_tenant, cluster, 4)
    counts, calls, reads = one_pass()

    assert (counts["namespaces"], counts["repaired"]) == (6, 0)
    assert not [c for c in calls if c[0] in WRITES]
    assert not [c for t in tenants for c in touching(calls, t.namespace)]
    # The version and the nodes (the cluster check), then one list per kind.
    assert len(calls) == len(few) <= 2 + len(k8s_backend.SNAPSHOT_KINDS)
    # The quotas and the security groups are read for all tenants at once.
    assert len(reads) == len(few_reads) <= 4
    assert not Event.objects.filter(tenant__in=tenants, reason="DriftRepaired").exists()


def test_deleted_and_edited_objects_are_repaired_in_one_pass_and_the_others_cost_no_call(
    make_tenant, cluster, kube, api_calls
):
    deleted, edited, unlabelled, intact = provisioned(make_tenant, cluster, 4)
    kube.core.delete_namespaced_resource_quota(manifests.QUOTA_NAME, deleted.namespace)
    kube.net.delete_namespaced_network_policy("sg-default", deleted.namespace)
    # kubectl patch of fields Isotope owns: one policy type dropped, a quota raised.
    kube.net.patch_namespaced_network_policy(
        manifests.DENY_POLICY, edited.namespace, {"spec": {"policyTypes": ["Ingress"]}}
    )
    kube.core.patch_namespaced_resource_quota(
        manifests.QUOTA_NAME, edited.namespace, {"spec": {"hard": {"count/pods": "999"}}}
    )
    # Without Isotope's label it is not in the lists, yet it is there: repaired, and
    # reported as repaired (not created).
    kube.core.patch_namespaced_service_account(
        manifests.SERVICE_ACCOUNT,
        unlabelled.namespace,
        {"metadata": {"labels": {manifests.MANAGED_BY: None}}},
    )

    calls = api_calls()
    counts = tasks.cluster_reconcile(cluster.pk)

    assert counts["repaired"] == 3
    assert not touching(calls, intact.namespace)
    assert not Event.objects.filter(tenant=intact, reason="DriftRepaired").exists()
    writes = sorted((c[0], c[1].rsplit("/", 2)[-2]) for c in calls if c[0] in WRITES)
    assert writes == [
        ("PATCH", "networkpolicies"),  # deleted's sg-default
        ("PATCH", "networkpolicies"),  # edited's default-deny
        ("PATCH", "resourcequotas"),  # deleted's
        ("PATCH", "resourcequotas"),  # edited's
        ("PATCH", "serviceaccounts"),  # unlabelled's
    ]

    quota = kube.core.read_namespaced_resource_quota(manifests.QUOTA_NAME, deleted.namespace)
    assert quota.spec.hard["count/pods"] == str(tenant_spec(deleted).pods)
    assert kube.net.read_namespaced_network_policy("sg-default", deleted.namespace)
    drift_reported(deleted, cluster, texts.DRIFT_RECREATED, created="ResourceQuota/isotope-quota")

    deny = kube.net.read_namespaced_network_policy(manifests.DENY_POLICY, edited.namespace)
    assert sorted(deny.spec.policy_types) == ["Egress", "Ingress"]
    quota = kube.core.read_namespaced_resource_quota(manifests.QUOTA_NAME, edited.namespace)
    assert quota.spec.hard["count/pods"] == str(tenant_spec(edited).pods)
    repaired = "ResourceQuota/isotope-quota, NetworkPolicy/default-deny"
    drift_reported(edited, cluster, texts.DRIFT_REVERTED, repaired=repaired)

    account = kube.core.read_namespaced_service_account(
        manifests.SERVICE_ACCOUNT, unlabelled.namespace
    )
    assert account.metadata.labels[manifests.MANAGED_BY] == manifests.MANAGER
    repaired = "ServiceAccount/isotope-workload"
    drift_reported(unlabelled, cluster, texts.DRIFT_REVERTED, repaired=repaired)

    # The next pass finds everything in place again.
    calls = api_calls()
    assert tasks.cluster_reconcile(cluster.pk)["repaired"] == 0
    assert not [c for c in calls if c[0] in WRITES]


@pytest.fixture
def eager():
    """Tasks the pass enqueues run at once, in this process."""
    from portal.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def applied(tenant, name: str, kind: str = "Deployment"):
    workload = workload_services.workload_create(
        actor=None,
        tenant=tenant,
        name=name,
        kind=kind,
        image="registry.invalid/isotope/web:1",
        cpu_request="100m",
        memory_request="64Mi",
    )
    tasks.workload_apply.apply(args=(workload.pk,))
    return workload


def test_a_deleted_deployment_is_reapplied_with_its_event_and_intact_workloads_are_not_touched(
    make_tenant, cluster, kube, api_calls, eager
):
    (tenant,) = provisioned(make_tenant, cluster, 1)
    applied(tenant, "gone")
    applied(tenant, "kept")
    applied(tenant, "solo", kind="Pod")
    kube.apps.delete_namespaced_deployment("gone", tenant.namespace)
    deadline = time.monotonic() + 20
    while kube.apps.list_namespaced_deployment(
        tenant.namespace, field_selector="metadata.name=gone"
    ).items:
        assert time.monotonic() < deadline, "the Deployment was not deleted within 20 s"
        time.sleep(0.1)

    calls = api_calls()
    counts = tasks.cluster_reconcile(cluster.pk)

    assert counts["reapplied"] == 1
    assert kube.apps.read_namespaced_deployment("gone", tenant.namespace)
    event = Event.objects.get(tenant=tenant, name="gone", reason="DriftRepaired")
    assert event.type == "Warning" and "Deployment" in event.message
    assert not Event.objects.filter(name__in=["kept", "solo"], reason="DriftRepaired").exists()
    assert not [c for c in calls if c[1].endswith(("/deployments/kept", "/pods/solo"))]
    assert [c for c in calls if c[0] == "PATCH" and c[1].endswith("/deployments/gone")]


def test_a_deployment_changed_with_kubectl_is_put_back_with_its_event_and_then_left_alone(
    make_tenant, cluster, kube, api_calls, eager
):
    """An image set and a scale done in the cluster behind Isotope's back are undone in
    one pass, each with a Warning event; the next pass finds everything in place."""
    from compute.texts import workloads as workload_texts

    (tenant,) = provisioned(make_tenant, cluster, 1)
    retagged, scaled, kept = (
        applied(tenant, "retagged"),
        applied(tenant, "scaled"),
        applied(tenant, "kept"),
    )
    namespace = tenant.namespace
    kube.apps.patch_namespaced_deployment(
        "retagged",
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": manifests.CONTAINER, "image": "registry.invalid/other:2"}
                        ]
                    }
                }
            }
        },
    )
    kube.apps.patch_namespaced_deployment("scaled", namespace, {"spec": {"replicas": 3}})

    calls = api_calls()
    counts = tasks.cluster_reconcile(cluster.pk)

    assert counts.get("edited") == 2 and counts["reapplied"] == 0
    image = (
        kube.apps.read_namespaced_deployment("retagged", namespace)
        .spec.template.spec.containers[0]
        .image
    )
    assert image == retagged.image
    assert (
        kube.apps.read_namespaced_deployment("scaled", namespace).spec.replicas
        == scaled.replicas
        == 1
    )
    for workload in (retagged, scaled):
        event = Event.objects.get(tenant=tenant, name=workload.name, reason="DriftRepaired")
        assert event.type == "Warning"
        assert event.message == workload_texts.EDITED_IN_CLUSTER % {
            "kind": "Deployment",
            "cluster": cluster.name,
        }
    assert not Event.objects.filter(name=kept.name, reason="DriftRepaired").exists()
    assert not [c for c in calls if c[1].endswith(f"/deployments/{kept.name}")]

    calls = api_calls()
    with CaptureQueriesContext(connection) as three:
        counts = tasks.cluster_reconcile(cluster.pk)
    assert "edited" not in counts
    assert not [c for c in calls if c[0] in WRITES]
    assert Event.objects.filter(tenant=tenant, reason="DriftRepaired").count() == 2

    # Comparing every Deployment reads nothing per workload.
    applied(tenant, "more-1"), applied(tenant, "more-2")
    with CaptureQueriesContext(connection) as five:
        tasks.cluster_reconcile(cluster.pk)
    assert len(five.captured_queries) == len(three.captured_queries)


def test_a_status_write_between_the_repairs_read_and_its_apply_is_no_edit(
    make_tenant, cluster, kube, eager, monkeypatch
):
    """The controller writes a Deployment's status when it likes (after a rollout, for
    one): a write landing between the repair's read and its apply changes the object's
    resourceVersion but is no edit, and is not reported as one."""
    (tenant,) = provisioned(make_tenant, cluster, 1)
    applied(tenant, "web")
    namespace = tenant.namespace
    sidecar = {"name": "sidecar", "image": "registry.invalid/sidecar:1"}
    # Not in place (a second container), so the pass reads and applies it.
    kube.apps.patch_namespaced_deployment(
        "web", namespace, {"spec": {"template": {"spec": {"containers": [sidecar]}}}}
    )
    read = k8s_backend.KubernetesBackend._get
    writes = []

    def read_then_status_written(self, path: str):
        found = read(self, path)
        if found is not None and path.endswith("/deployments/web"):
            collisions = (found.get("status") or {}).get("collisionCount") or 0
            kube.apps.patch_namespaced_deployment_status(
                "web", namespace, {"status": {"collisionCount": collisions + 1}}
            )
            writes.append(path)
        return found

    monkeypatch.setattr(k8s_backend.KubernetesBackend, "_get", read_then_status_written)
    counts = tasks.cluster_reconcile(cluster.pk)
    assert writes, "the pass did not read the Deployment before applying it"
    assert "edited" not in counts
    assert not Event.objects.filter(tenant=tenant, reason="DriftRepaired").exists()


def test_a_quota_status_written_between_the_read_and_the_apply_is_no_repair(
    make_tenant, cluster, kube, monkeypatch
):
    """The quota controller writes a ResourceQuota's ``used`` as pods come and go: a
    write landing between ``ensure_tenant``'s read of the quota and its apply moves the
    quota's resourceVersion but repairs nothing, and is not reported as a repair."""
    (tenant,) = provisioned(make_tenant, cluster, 1)
    namespace = tenant.namespace
    read = k8s_backend.KubernetesBackend._get
    writes = []

    def read_then_status_written(self, path: str):
        found = read(self, path)
        if found is not None and path.endswith(f"/resourcequotas/{manifests.QUOTA_NAME}"):
            used = dict((found.get("status") or {}).get("used") or {})
            used["count/pods"] = str(int(used.get("count/pods") or 0) + 1)
            kube.core.patch_namespaced_resource_quota_status(
                manifests.QUOTA_NAME, namespace, {"status": {"used": used}}
            )
            writes.append(path)
        return found

    monkeypatch.setattr(k8s_backend.KubernetesBackend, "_get", read_then_status_written)
    # Without a snapshot (a tenant's provisioning): every object is read and applied.
    report = cluster_backend(cluster).ensure_tenant(tenant_spec(tenant))
    assert writes, "ensure_tenant did not read the quota before applying it"
    assert report.repaired == [] and report.created == []
    assert f"ResourceQuota/{manifests.QUOTA_NAME}" in report.unchanged


def test_a_container_another_tool_added_is_left_and_never_reported(
    make_tenant, cluster, kube, eager
):
    """A field that is not Isotope's (a sidecar container added with kubectl) is not
    taken away, and a pass never reports it: applying Isotope's spec changes nothing."""
    (tenant,) = provisioned(make_tenant, cluster, 1)
    applied(tenant, "web")
    sidecar = {"name": "sidecar", "image": "registry.invalid/sidecar:1"}
    kube.apps.patch_namespaced_deployment(
        "web",
        tenant.namespace,
        {"spec": {"template": {"spec": {"containers": [sidecar]}}}},
    )

    for _ in range(2):
        counts = tasks.cluster_reconcile(cluster.pk)
        assert "edited" not in counts

    containers = kube.apps.read_namespaced_deployment(
        "web", tenant.namespace
    ).spec.template.spec.containers
    assert sorted(c.name for c in containers) == [manifests.CONTAINER, "sidecar"]
    assert not Event.objects.filter(tenant=tenant, reason="DriftRepaired").exists()


def test_a_deployment_not_yet_applied_from_its_newest_spec_is_not_called_edited(
    make_tenant, cluster, kube, api_calls, eager
):
    """Between a spec change and its apply, the Deployment in the cluster differs from
    the spec: that is the apply's to do, not drift."""
    from django.db.models import F

    from compute.models import Workload

    (tenant,) = provisioned(make_tenant, cluster, 1)
    workload = applied(tenant, "web")
    # As a scale does before its task runs: a new generation, not applied yet.
    Workload.objects.filter(pk=workload.pk).update(replicas=2, generation=F("generation") + 1)

    calls = api_calls()
    counts = tasks.cluster_reconcile(cluster.pk)

    assert "edited" not in counts
    assert not [c for c in calls if c[0] in WRITES]
    assert kube.apps.read_namespaced_deployment("web", tenant.namespace).spec.replicas == 1
    assert not Event.objects.filter(tenant=tenant, reason="DriftRepaired").exists()


@pytest.fixture
def narrow_kubeconfig(cluster, kube):
    """``narrow_kubeconfig(namespace)``: the cluster's kubeconfig for a service account
    that may do anything inside ``namespace`` and read namespaces and nodes, but list
    nothing across namespaces (as a portal given rights per namespace would be)."""
    made: list[str] = []

    def make(namespace: str) -> str:
        name = f"isotope-narrow-{uuid.uuid4().hex[:8]}"
        made.append(name)
        kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "narrow"}})
        kube.rbac.create_cluster_role(
            {
                "metadata": {"name": name},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["namespaces", "nodes"],
                        "verbs": ["get", "list", "patch"],
                    }
                ],
            }
        )
        subject = [{"kind": "ServiceAccount", "name": "narrow", "namespace": namespace}]
        kube.rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": subject,
            }
        )
        kube.rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "narrow-admin"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": subject,
            },
        )
        token = kube.core.create_namespaced_service_account_token(
            "narrow", namespace, {"spec": {"expirationSeconds": 600}}
        ).status.token
        config = yaml.safe_load(cluster_kubeconfig(cluster))
        for user in config["users"]:
            user["user"] = {"token": token}
        return yaml.safe_dump(config)

    yield make
    for name in made:
        for delete in (kube.rbac.delete_cluster_role_binding, kube.rbac.delete_cluster_role):
            try:
                delete(name)
            except ApiException as error:
                if error.status != 404:
                    raise


def test_a_list_the_api_server_refuses_never_counts_as_missing(
    make_tenant, cluster, kube, api_calls, narrow_kubeconfig, eager
):
    (tenant,) = provisioned(make_tenant, cluster, 1)
    applied(tenant, "web")
    kube.core.delete_namespaced_limit_range(manifests.LIMITS_NAME, tenant.namespace)
    # The policy of a group the tenant no longer has: the per-namespace list finds it.
    stale = GroupPolicySpec(name="stale")
    cluster_backend(cluster).apply(manifests.group_policy(tenant.namespace, tenant.slug, stale))
    cluster_set_kubeconfig(cluster, narrow_kubeconfig(tenant.namespace))
    cluster.save()

    calls = api_calls()
    counts = tasks.cluster_reconcile(cluster.pk)

    refused = {c[1] for c in calls if c[3] == 403}
    assert "/api/v1/limitranges" in refused and "/apis/apps/v1/deployments" in refused
    # Object by object instead: the deleted one is created, nothing else is reported.
    assert counts["repaired"] == 1 and counts["reapplied"] == 0
    drift_reported(tenant, cluster, texts.DRIFT_RECREATED, created="LimitRange/isotope-defaults")
    assert kube.core.read_namespaced_limit_range(manifests.LIMITS_NAME, tenant.namespace)
    assert not Event.objects.filter(tenant=tenant, name="web", reason="DriftRepaired").exists()
    policies = kube.net.list_namespaced_network_policy(tenant.namespace).items
    assert {p.metadata.name for p in policies if p.metadata.name.startswith("sg-")} == {
        "sg-default"
    }


def test_long_lists_are_read_page_by_page(make_tenant, cluster, api_calls, monkeypatch):
    tenants = provisioned(make_tenant, cluster, 3)
    monkeypatch.setattr(k8s_backend, "LIST_PAGE", 2)

    calls = api_calls()
    counts = tasks.cluster_reconcile(cluster.pk)

    assert (counts["namespaces"], counts["repaired"]) == (3, 0)
    assert not [c for c in calls if c[0] in WRITES]
    assert not [c for t in tenants for c in touching(calls, t.namespace)]
    pages = [c for c in calls if c[1] == "/api/v1/namespaces"]
    assert len(pages) >= 2 and all("continue" in c[2] for c in pages[1:])


def test_a_value_the_api_server_rewrites_counts_as_different_and_is_reported_unchanged(
    make_tenant, cluster, kube
):
    (tenant,) = provisioned(make_tenant, cluster, 1)
    backend = cluster_backend(cluster)
    quota = manifests.resource_quota(replace(tenant_spec(tenant), memory_mib=1024))
    quota["spec"]["hard"]["requests.memory"] = "1024Mi"  # stored as 1Gi
    live = backend.apply(quota)

    assert live["spec"]["hard"]["requests.memory"] == "1Gi"
    assert not k8s_backend.in_place(quota, live)
    assert k8s_backend.in_place(manifests.resource_quota(tenant_spec(tenant)), None) is False
    # An empty list the server leaves out is in place; a value of another type is not.
    assert k8s_backend.in_place({"spec": {"ingress": []}}, {"metadata": {}, "spec": {}})
    assert not k8s_backend.in_place(
        {"spec": {"port": 53}}, {"metadata": {}, "spec": {"port": "53"}}
    )


def test_a_tenant_with_terabytes_and_a_thousand_cores_is_in_place_after_provisioning(
    make_tenant, cluster, kube, api_calls
):
    """Isotope writes quantities as the API server stores them ("1Ti", not "1024Gi";
    "1k" cores, not "1000"): otherwise such a tenant's quota would differ from its
    listed copy at every pass and be read and applied again every 30 s."""
    tenant = make_tenant(quota={"cpu": 1000, "memory": 1024 * 1024, "storage": 2048})
    tenant_provision(tenant=tenant, cluster=cluster)
    hard = kube.core.read_namespaced_resource_quota(manifests.QUOTA_NAME, tenant.namespace)
    assert hard.spec.hard["requests.cpu"] == "1k"
    assert hard.spec.hard["requests.memory"] == "1Ti"
    assert hard.spec.hard["requests.storage"] == "2Ti"

    calls = api_calls()
    counts = tasks.cluster_reconcile(cluster.pk)

    assert counts["repaired"] == 0
    assert not [c for c in calls if c[0] in WRITES]
    assert not touching(calls, tenant.namespace)


@pytest.mark.parametrize(
    ("millicores", "text"),
    [(0, "0"), (500, "500m"), (1500, "1500m"), (2000, "2"), (1_000_000, "1k"), (2_500_000, "2500")],
)
def test_cpu_quantities_are_written_in_the_servers_form(millicores, text):
    assert manifests.cpu_quantity(millicores) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0"),
        (1000, "1k"),
        (1500, "1500"),
        (500_000_000, "500M"),
        (128 * 1024**2, "128Mi"),
        (1024**4, "1Ti"),
        (1536 * 1024**3, "1536Gi"),
    ],
)
def test_memory_quantities_are_written_in_the_servers_form(size, text):
    assert manifests.memory_quantity(size) == text
