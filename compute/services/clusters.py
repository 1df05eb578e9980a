"""Kubernetes cluster services: register a cluster, check it, provision tenant namespaces.

A cluster's kubeconfig is stored encrypted (``monitoring.crypto``, a key derived from
``SECRET_KEY``) and only decrypted here, to build its backend. Provisioning is
idempotent: the first run creates the namespace's objects (a Normal event), later runs
change nothing unless someone edited or deleted them, which is repaired and reported as
a Warning event (``DriftRepaired``).

How the tenant's one quota maps to its namespace: Isotope's ledger
(``tenants.services.quota_reserve``) is the source of truth and charges VMs and pods
together before anything reaches a cluster. The namespace's ResourceQuota mirrors the
tenant's *limits* (``requests.cpu`` = cpu cores, ``requests.memory`` = memory MiB,
``limits.*`` = requests × ``ISOTOPE_K8S_LIMIT_RATIO``, ``count/pods`` = pods) as a
backstop: it stops anything that bypasses the portal, and its refusals surface as
errors. It is re-applied whenever the tenant's limits change (``quota_changed``).
"""

from __future__ import annotations

import base64
import logging
from decimal import Decimal
from pathlib import Path

import yaml
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.backends.base import BackendError
from compute.backends.containers import ProvisionReport, TenantSpec
from compute.backends.kubernetes import KubernetesBackend
from compute.models import KubernetesCluster, TenantNamespace
from monitoring import crypto
from monitoring.services import event_publish
from portal.exceptions import ValidationError
from tenants.models import Quota, Tenant
from tenants.services import audit_record

logger = logging.getLogger(__name__)

# kubeconfig keys that name files, and the inline key each becomes.
_FILE_KEYS = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
}


def kubeconfig_inline(text: str, *, base: Path | None = None) -> tuple[str, str]:
    """The kubeconfig with every referenced file embedded (so the stored copy is the
    whole credential), and its current context's server URL."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValidationError(
            "The kubeconfig is not YAML.", errors={"kubeconfig": [str(error)[:200]]}
        ) from None
    if not isinstance(data, dict) or not data.get("clusters"):
        raise ValidationError(
            "Not a kubeconfig.", errors={"kubeconfig": ["It has no clusters section."]}
        )
    for section, inner in (("clusters", "cluster"), ("users", "user")):
        for entry in data.get(section) or []:
            body = entry.get(inner) or {}
            for key, inline in _FILE_KEYS.items():
                if key in body:
                    path = Path(body.pop(key))
                    if not path.is_absolute() and base is not None:
                        path = base / path
                    body[inline] = base64.b64encode(path.read_bytes()).decode()
    current = data.get("current-context")
    contexts = {c["name"]: c.get("context", {}) for c in data.get("contexts") or []}
    cluster_name = contexts.get(current, {}).get("cluster") or data["clusters"][0]["name"]
    server = next(
        (c["cluster"].get("server", "") for c in data["clusters"] if c["name"] == cluster_name),
        "",
    )
    return yaml.safe_dump(data), server


def cluster_kubeconfig(cluster: KubernetesCluster) -> str:
    return crypto.decrypt(cluster.kubeconfig_encrypted, context=crypto.KUBECONFIG)


def cluster_backend(cluster: KubernetesCluster) -> KubernetesBackend:
    """The backend for ``cluster``, chosen from its record (capabilities included)."""
    return KubernetesBackend(
        kubeconfig=cluster_kubeconfig(cluster), capabilities=cluster.capabilities or None
    )


@transaction.atomic
def cluster_register(
    *, actor, name: str, kubeconfig: str, default: bool = False, base: Path | None = None
) -> KubernetesCluster:
    """Add a cluster (or replace its kubeconfig); callers check it. With ``default``, it
    becomes the cluster new workloads go to."""
    text, server = kubeconfig_inline(kubeconfig, base=base)
    if default:
        KubernetesCluster.objects.filter(default=True).exclude(name=name).update(default=False)
    cluster, _ = KubernetesCluster.objects.update_or_create(
        name=name,
        defaults={
            "kubeconfig_encrypted": crypto.encrypt(text, context=crypto.KUBECONFIG),
            "server": server,
            **({"default": True} if default else {}),
        },
    )
    audit_record(
        actor=actor, action="cluster.register", target=f"cluster/{name}", detail={"server": server}
    )
    return cluster


def cluster_set_kubeconfig(cluster: KubernetesCluster, kubeconfig: str) -> None:
    """Store a new kubeconfig (admin form); the old one is overwritten, never shown."""
    text, server = kubeconfig_inline(kubeconfig)
    cluster.kubeconfig_encrypted = crypto.encrypt(text, context=crypto.KUBECONFIG)
    cluster.server = server


def cluster_check(cluster: KubernetesCluster, *, actor=None) -> KubernetesCluster:
    """Read version and node capacity; record reachability and capabilities."""
    try:
        facts = cluster_backend(cluster).facts()
    except (BackendError, crypto.SecretUnreadable) as error:
        KubernetesCluster.objects.filter(pk=cluster.pk).update(
            reachable=False, message=str(error)[:500]
        )
        cluster.reachable, cluster.message = False, str(error)[:500]
        return cluster
    KubernetesCluster.objects.filter(pk=cluster.pk).update(
        reachable=True,
        last_seen=timezone.now(),
        message="",
        version=facts.version,
        capacity={
            "nodes": facts.nodes,
            "cpu": str(facts.cpu.normalize()),
            "memory_mib": facts.memory_mib,
            "pods": facts.pods,
        },
        capabilities=facts.capabilities,
    )
    cluster.refresh_from_db()
    if actor is not None:
        audit_record(actor=actor, action="cluster.check", target=f"cluster/{cluster.name}")
    return cluster


def cluster_reachability(cluster: KubernetesCluster, *, reachable: bool, message: str = "") -> None:
    """Record what the watch sees of the API server."""
    updates: dict = {"reachable": reachable, "message": message[:500]}
    if reachable:
        updates["last_seen"] = timezone.now()
    KubernetesCluster.objects.filter(pk=cluster.pk).update(**updates)


# --- Tenant namespaces ----------------------------------------------------------------
def tenant_spec(tenant: Tenant) -> TenantSpec:
    quota = Quota.objects.get(tenant=tenant)
    return TenantSpec(
        tenant=tenant.slug,
        namespace=tenant.namespace,
        cpu=Decimal(quota.cpu),
        memory_mib=int(quota.memory),
        pods=int(quota.pods),
        limit_ratio=Decimal(str(settings.ISOTOPE_K8S_LIMIT_RATIO)),
    )


def namespace_for(tenant: Tenant, cluster: KubernetesCluster) -> TenantNamespace:
    """The tenant's namespace record on ``cluster`` (created, not yet provisioned)."""
    row, _ = TenantNamespace.objects.get_or_create(
        tenant=tenant, cluster=cluster, defaults={"name": tenant.namespace}
    )
    return row


def tenant_provision(*, tenant: Tenant, cluster: KubernetesCluster) -> ProvisionReport:
    """Create or repair the tenant's namespace objects on ``cluster`` (idempotent).

    Raises the backend's errors (tasks retry transient ones); records the outcome on the
    namespace row and as an event of kind ``namespace``.
    """
    row = namespace_for(tenant, cluster)
    try:
        report = cluster_backend(cluster).ensure_tenant(tenant_spec(tenant))
    except BackendError as error:
        TenantNamespace.objects.filter(pk=row.pk).update(ready=False, message=str(error)[:1000])
        raise
    first = row.provisioned is None
    TenantNamespace.objects.filter(pk=row.pk).update(
        ready=True, message="", provisioned=timezone.now()
    )
    if report.created and first:
        event_publish(
            tenant=tenant,
            kind="namespace",
            name=row.name,
            reason="Provisioned",
            message=f"Namespace {row.name} on {cluster.name}: " + ", ".join(report.created) + ".",
        )
    elif report.changed:
        parts = []
        if report.created:
            parts.append("recreated " + ", ".join(report.created))
        if report.repaired:
            parts.append("reverted changes to " + ", ".join(report.repaired))
        event_publish(
            tenant=tenant,
            kind="namespace",
            name=row.name,
            type="Warning",
            reason="DriftRepaired",
            message=f"Namespace {row.name} on {cluster.name} was changed outside the portal: "
            + "; ".join(parts)
            + ".",
        )
    return report
