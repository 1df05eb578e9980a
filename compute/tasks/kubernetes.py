"""Tasks that drive Kubernetes clusters (queue ``kubernetes``).

Every task takes ids, loads fresh state and converges: ``workload_apply`` server-side
applies the workload's whole desired spec (so running it twice changes nothing), or
removes its objects when it is being deleted and finalises once they are gone.
One task at a time per workload (a Redis lock); transient API errors are retried with
backoff, the API server's quota refusal releases the reservation of the generation it
refused, other permanent errors set ``Failed`` (both recorded against the copy the task
applied, so a spec changed meanwhile is not reported as failed). Status comes from the
watch, not from these tasks.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from compute import selectors
from compute.backends.base import BackendError, TransientBackendError
from compute.backends.containers import QuotaRefused
from compute.choices import Phase, WorkloadKind
from compute.models import KubernetesCluster, Service, TenantNamespace, Workload
from compute.services import clusters as cluster_services
from compute.services import hpa as hpa_services
from compute.services import load_balancers as service_services
from compute.services import workloads as workload_services
from compute.tasks.locks import Busy, task_lock
from compute.texts import workloads as texts
from monitoring.services import event_publish
from tenants.models import Tenant

logger = logging.getLogger(__name__)

MAX_RETRIES = 6
DELETE_POLLS = 90  # × 2 s: how long a deletion waits for its pods to go


def workload_lock(workload_id: int, seconds: int = 120):
    return task_lock(f"isotope:workload-lock:{workload_id}", seconds)


def _load(workload_id: int) -> Workload | None:
    return Workload.objects.select_related("tenant", "cluster").filter(pk=workload_id).first()


def _ensure_namespace(workload: Workload) -> None:
    row = TenantNamespace.objects.filter(tenant=workload.tenant, cluster=workload.cluster).first()
    if row is None or not row.ready:
        cluster_services.tenant_provision(tenant=workload.tenant, cluster=workload.cluster)


@shared_task(bind=True, acks_late=True)
def workload_apply(self, workload_id: int) -> None:
    """Converge one workload's objects to its spec (create, scale, restart, delete),
    a Deployment's HorizontalPodAutoscaler (its autoscaler's) included."""
    loaded: list[Workload] = []
    try:
        with workload_lock(workload_id):
            workload = _load(workload_id)
            if workload is None:
                return
            loaded.append(workload)
            backend = cluster_services.cluster_backend(workload.cluster)
            deployment = workload.kind == WorkloadKind.DEPLOYMENT
            if workload.deleting:
                if deployment:  # its HorizontalPodAutoscaler first: nothing left to scale
                    backend.autoscalers_sync(workload.namespace, workload.name, None)
                remaining = backend.delete_workload(
                    workload.namespace, workload.name, workload.kind
                )
                if not remaining:
                    workload_services.workload_finalize_delete(workload)
                    return
                raise self.retry(countdown=2, max_retries=DELETE_POLLS)
            _ensure_namespace(workload)
            try:
                backend.apply_workload(workload_services.workload_spec(workload))
            except QuotaRefused as error:
                workload_services.workload_refused(workload, str(error))
            if deployment:
                autoscaler = workload_services.autoscaler_of(workload)
                wanted = hpa_services.autoscaler_spec(autoscaler) if autoscaler else None
                backend.autoscalers_sync(workload.namespace, workload.name, wanted)
    except Busy:
        raise self.retry(countdown=1, max_retries=120) from None
    except TransientBackendError as error:
        if self.request.retries < MAX_RETRIES:
            delay = min(2 ** (self.request.retries + 1), 60)
            logger.warning("retrying workload %s in %ss: %s", workload_id, delay, error)
            raise self.retry(countdown=delay) from error
        if loaded:
            workload_services.workload_fail(
                loaded[0], texts.NO_ANSWER % {"retries": self.request.retries}
            )
    except BackendError as error:
        if loaded:
            workload_services.workload_fail(loaded[0], str(error))


@shared_task(bind=True, acks_late=True)
def tenant_provision(self, tenant_id: int, cluster_id: int | None = None) -> None:
    """Create or repair a tenant's namespace objects on one cluster, or on every cluster
    where it has a namespace (idempotent)."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return
    rows = TenantNamespace.objects.filter(tenant=tenant).select_related("cluster")
    if cluster_id is not None:
        rows = rows.filter(cluster_id=cluster_id)
    try:
        for row in rows:
            cluster_services.tenant_provision(tenant=tenant, cluster=row.cluster)
    except TransientBackendError as error:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=min(2 ** (self.request.retries + 1), 60)) from error
        logger.error("provisioning %s failed: %s", tenant, error)
    except BackendError as error:
        logger.error("provisioning %s failed: %s", tenant, error)


@shared_task(bind=True, acks_late=True)
def security_group_policies(self, tenant_id: int) -> None:
    """The tenant's security groups changed: its NetworkPolicies follow on every
    cluster where its namespace is ready (one run at a time per tenant)."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return
    try:
        with task_lock(f"isotope:sg-policies:{tenant_id}", 120):
            rows = TenantNamespace.objects.filter(tenant=tenant, ready=True)
            for row in rows.select_related("cluster"):
                cluster_services.security_policies_sync(tenant=tenant, cluster=row.cluster)
    except Busy:
        raise self.retry(countdown=1, max_retries=120) from None
    except TransientBackendError as error:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=min(2 ** (self.request.retries + 1), 60)) from error
        logger.error("security group policies of %s failed: %s", tenant, error)
    except BackendError as error:
        logger.error("security group policies of %s failed: %s", tenant, error)


@shared_task(bind=True, acks_late=True)
def sync_service_endpoints(self, service_id: int) -> None:
    """Make a Service's Kubernetes Service and EndpointSlice match its spec and its
    members now (or remove them, for a deleted one). Idempotent; one run at a time
    per service; a run that finds it busy retries, so the last change is never lost.
    A failure is recorded while the run still holds the service, so a later run's
    outcome is never overwritten by it."""
    try:
        with task_lock(f"isotope:service-lock:{service_id}", 120):
            try:
                service_services.service_sync(service_id)
            except TransientBackendError as error:
                if self.request.retries < MAX_RETRIES:
                    delay = min(2 ** (self.request.retries + 1), 60)
                    logger.warning("retrying service %s in %ss: %s", service_id, delay, error)
                    raise self.retry(countdown=delay) from error
                service_services.service_fail(
                    service_id, texts.NO_ANSWER % {"retries": self.request.retries}
                )
            except BackendError as error:
                service_services.service_fail(service_id, str(error))
    except Busy:
        raise self.retry(countdown=1, max_retries=120) from None


@shared_task(acks_late=True)
def cluster_check(cluster_id: int) -> None:
    cluster = KubernetesCluster.objects.filter(pk=cluster_id).first()
    if cluster is not None:
        cluster_services.cluster_check(cluster)


@shared_task(acks_late=True)
def cluster_reconcile(cluster_id: int) -> dict:
    """Repair drift on one cluster: re-provision every tenant namespace (a deleted or
    edited object comes back, with a Warning event), re-apply workloads whose objects
    vanished or that are stuck, and finish deletions.

    Isotope's objects are listed once per kind for the whole pass
    (``reconcile_pass``); an object the lists show in place costs no call, the others
    are read and applied one by one. A kind whose list failed is checked object by
    object, as if there were no lists: a failed list never counts as missing."""
    cluster = KubernetesCluster.objects.filter(pk=cluster_id, enabled=True).first()
    if cluster is None:
        return {}
    cluster = cluster_services.cluster_check(cluster)
    if not cluster.reachable:
        return {"unreachable": True}
    counts = {"namespaces": 0, "repaired": 0, "reapplied": 0}
    rows = list(TenantNamespace.objects.filter(cluster=cluster).select_related("tenant"))
    batch = cluster_services.reconcile_pass(cluster=cluster, tenants=[row.tenant for row in rows])
    for row in rows:
        try:
            report = cluster_services.tenant_provision(
                tenant=row.tenant, cluster=cluster, row=row, batch=batch
            )
        except BackendError as error:
            logger.warning("reconcile of %s failed: %s", row, error)
            continue
        counts["namespaces"] += 1
        counts["repaired"] += report.changed
    backend, snapshot = batch.backend, batch.snapshot
    stuck = timezone.now() - timedelta(seconds=settings.ISOTOPE_K8S_STUCK_SECONDS)
    # What a workload's spec needs besides its row, for the whole pass at once.
    workloads = selectors.with_has_autoscaler(
        Workload.objects.filter(cluster=cluster)
        .select_related("tenant")
        .prefetch_related("security_groups")
    )
    for workload in workloads:
        if workload.deleting or (
            workload.phase == Phase.PENDING and workload.phase_changed < stuck
        ):
            workload_apply.delay(workload.pk)
            counts["reapplied"] += 1
            continue
        if workload.refused_generation == workload.generation:
            continue  # refused by the cluster: stays failed until its spec changes
        if snapshot is not None and snapshot.present(
            workload.kind, workload.namespace, workload.name
        ):
            # There; and as Isotope's spec says? (A kubectl edit or scale is undone.)
            try:
                spec = workload_services.workload_spec(workload)
                repaired = backend.workload_repair(spec, snapshot=snapshot)
            except BackendError as error:
                logger.warning("repair of %s failed: %s", workload, error)
                continue
            if repaired:
                _drift_repaired(workload, cluster, texts.EDITED_IN_CLUSTER)
                counts["edited"] = counts.get("edited", 0) + 1
            continue
        # Not in the list (or its kind could not be listed): ask for it by name before
        # telling anyone it is missing (it may have lost its label, or be newer).
        try:
            exists = backend.workload_exists(workload.namespace, workload.name, workload.kind)
        except BackendError:
            continue
        if not exists:
            _drift_repaired(workload, cluster, texts.MISSING_FROM_CLUSTER)
            workload_apply.delay(workload.pk)
            counts["reapplied"] += 1
    # Services: their members are re-derived (a missed change is repaired here).
    for service_id in Service.objects.filter(cluster=cluster).values_list("pk", flat=True):
        sync_service_endpoints.delay(service_id)
        counts["services"] = counts.get("services", 0) + 1
    return counts


def _drift_repaired(workload: Workload, cluster: KubernetesCluster, text: str) -> None:
    """The workload's Warning that the pass found it changed or gone (``text``)."""
    event_publish(
        tenant=workload.tenant,
        kind=workload_services.EVENT_KIND,
        name=workload.name,
        uid=str(workload.uid),
        type="Warning",
        reason="DriftRepaired",
        message=text % {"kind": workload.kind, "cluster": cluster.name},
    )


@shared_task
def reconcile_clusters() -> None:
    """Beat entry point: one reconcile task per enabled cluster."""
    for cluster_id in KubernetesCluster.objects.filter(enabled=True).values_list("pk", flat=True):
        cluster_reconcile.delay(cluster_id)


@shared_task
def quota_changed(tenant_id: int) -> None:
    """The tenant's limits changed: re-apply its namespace quota on every cluster."""
    if TenantNamespace.objects.filter(Q(tenant_id=tenant_id)).exists():
        tenant_provision.delay(tenant_id)
