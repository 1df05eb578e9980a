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
``limits.*`` = requests × ``ISOTOPE_K8S_LIMIT_RATIO``, ``count/pods`` = pods,
``requests.storage`` = storage GiB, shared with VM disks in the ledger) as a
backstop: it stops anything that bypasses the portal, and its refusals surface as
errors. It is re-applied whenever the tenant's limits change (``quota_changed``).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import yaml
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute.backends.base import BackendError
from compute.backends.containers import (
    ClusterSnapshot,
    GroupPolicySpec,
    ProvisionReport,
    TenantSpec,
)
from compute.backends.kubernetes import KubernetesBackend
from compute.models import KubernetesCluster, TenantNamespace
from compute.texts import clusters as texts
from monitoring import crypto
from monitoring.services import event_publish
from portal.exceptions import ValidationError
from tenants.choices import AuditOutcome
from tenants.models import Quota, Tenant
from tenants.services import audit_record

logger = logging.getLogger(__name__)

# kubeconfig keys that name files on the portal host, and the inline key each becomes.
_FILE_KEYS = {
    "cluster": {"certificate-authority": "certificate-authority-data"},
    "user": {
        "client-certificate": "client-certificate-data",
        "client-key": "client-key-data",
        "tokenFile": "token",
    },
}
# User entries the Kubernetes client turns into a program run on the portal host.
_COMMAND_KEYS = {
    "exec": "runs a credential plugin command",
    "auth-provider": "runs an auth-provider plugin (which may run a command)",
}


def _invalid(message: str) -> ValidationError:
    return ValidationError(f"Refused kubeconfig: {message}", errors={"kubeconfig": [message]})


def _entries(data: dict, section: str, inner: str) -> list[tuple[str, dict]]:
    """``(name, body)`` of each entry of ``clusters``/``users``/``contexts``."""
    entries = data.get(section) or []
    if not isinstance(entries, list):
        raise _invalid(f"'{section}' must be a list.")
    out = []
    for entry in entries:
        body = entry.get(inner) if isinstance(entry, dict) else None
        if isinstance(entry, dict) and body is None:
            body = entry[inner] = {}
        if not isinstance(body, dict):
            raise _invalid(f"each of '{section}' needs a name and a '{inner}' mapping.")
        out.append((str(entry.get("name", "")), body))
    return out


def _embed(body: dict, key: str, inline: str, where: str, base: Path | None) -> None:
    """Replace the file reference ``body[key]`` by its content under ``inline``: only
    for the portal's own seeding (``base``: the folder the kubeconfig came from, which
    the file must be inside); typed-in kubeconfigs must embed their credentials."""
    if base is None:
        raise _invalid(
            f"{where} '{key}' names a file on the portal host; embed it as '{inline}' "
            "(kubectl config view --raw --flatten)."
        )
    root = base.resolve()
    path = (root / str(body.pop(key))).resolve()
    if not path.is_relative_to(root):
        raise _invalid(f"{where} '{key}' points outside {root}.")
    content = path.read_bytes()
    body[inline] = (
        content.decode().strip() if inline == "token" else base64.b64encode(content).decode()
    )


MAX_KUBECONFIG = 256 * 1024
MAX_DEPTH = 20
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built in: fast


def _kubeconfig_load(text: str) -> dict:
    """The kubeconfig as a mapping with clusters, else ``ValidationError``: not YAML,
    too large, nested too deeply, or with aliases (never a crash or a memory blow-up)."""
    if len(text) > MAX_KUBECONFIG:
        raise _invalid(f"at most {MAX_KUBECONFIG // 1024} KiB.")
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_LOADER):
            # Aliases could expand to gigabytes when the copy is written back, and deep
            # nesting costs time and stack; a kubeconfig needs neither.
            if isinstance(event, yaml.AliasEvent):
                raise _invalid("YAML aliases are not allowed; write it without anchors.")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _invalid(f"nested too deeply (at most {MAX_DEPTH} levels).")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - CSafeLoader or SafeLoader
    except yaml.YAMLError as error:
        raise _invalid(f"not YAML ({str(error)[:200]}).") from None
    if not isinstance(data, dict) or not data.get("clusters"):
        raise _invalid("it has no clusters section.")
    return data


def kubeconfig_inline(text: str, *, base: Path | None = None) -> tuple[str, str]:
    """The kubeconfig as stored (every credential embedded) and its current context's
    server URL; ``ValidationError`` (field ``kubeconfig``) for anything else.

    Refused, because the Kubernetes client would act on the portal host: ``exec``
    credential plugins and ``auth-provider`` entries (commands), and references to files
    (``client-certificate``, ``client-key``, ``tokenFile``, ``certificate-authority``)
    unless ``base`` is given: the portal's own local cluster is seeded from a kubeconfig
    whose files sit next to it, under ``base``.
    """
    data = _kubeconfig_load(text)
    clusters = _entries(data, "clusters", "cluster")
    for name, body in _entries(data, "users", "user"):
        for key, why in _COMMAND_KEYS.items():
            if key in body:
                raise _invalid(
                    f"user '{name}' uses '{key}', which {why} on the portal host; use a "
                    "client certificate or a token embedded in the kubeconfig."
                )
    for section, inner in (("clusters", "cluster"), ("users", "user")):
        for name, body in _entries(data, section, inner):
            for key, inline in _FILE_KEYS[inner].items():
                if key in body:
                    _embed(body, key, inline, f"{inner} '{name}'", base)
    contexts = {name: body for name, body in _entries(data, "contexts", "context")}
    current = contexts.get(str(data.get("current-context", "")), {})
    cluster_name = current.get("cluster") or clusters[0][0]
    server = next(
        (str(body.get("server", "")) for name, body in clusters if name == cluster_name), ""
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
        default_clear(keep_name=name)
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


def default_clear(*, keep_name: str = "", keep_pk: int | None = None) -> None:
    """In the caller's transaction, before it makes a cluster the default: no other is
    the default any more. Every cluster row is locked first (there are few), so two
    clusters made the default at the same moment take turns and the later one stays
    the default (without the lock the later one found nothing to clear, the other's
    flag being still unwritten, and failed on the one-default constraint)."""
    list(KubernetesCluster.objects.select_for_update().order_by("pk").values_list("pk"))
    others = KubernetesCluster.objects.filter(default=True)
    if keep_name:
        others = others.exclude(name=keep_name)
    if keep_pk is not None:
        others = others.exclude(pk=keep_pk)
    others.update(default=False)


def cluster_set_kubeconfig(cluster: KubernetesCluster, kubeconfig: str) -> None:
    """Store a new kubeconfig (admin form); the old one is overwritten, never shown."""
    text, server = kubeconfig_inline(kubeconfig)
    cluster.kubeconfig_encrypted = crypto.encrypt(text, context=crypto.KUBECONFIG)
    cluster.server = server


def cluster_check(cluster: KubernetesCluster, *, actor=None) -> KubernetesCluster:
    """Read version and node capacity; record reachability and capabilities. Asked by
    ``actor`` (staff): audited, an unreachable cluster as failed with the error."""
    try:
        facts = cluster_backend(cluster).facts()
    except (BackendError, crypto.SecretUnreadable) as error:
        KubernetesCluster.objects.filter(pk=cluster.pk).update(
            reachable=False, message=str(error)[:500]
        )
        cluster.reachable, cluster.message = False, str(error)[:500]
        if actor is not None:
            audit_record(
                actor=actor,
                action="cluster.check",
                target=f"cluster/{cluster.name}",
                outcome=AuditOutcome.FAILED,
                detail={"error": cluster.message},
            )
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
    return _tenant_spec(tenant, Quota.objects.get(tenant=tenant))


def _tenant_spec(tenant: Tenant, quota: Quota) -> TenantSpec:
    return TenantSpec(
        tenant=tenant.slug,
        namespace=tenant.namespace,
        cpu=Decimal(quota.cpu),
        memory_mib=int(quota.memory),
        pods=int(quota.pods),
        limit_ratio=Decimal(str(settings.ISOTOPE_K8S_LIMIT_RATIO)),
        storage_gib=int(quota.storage),
    )


@dataclass
class ReconcilePass:
    """What one reconcile pass over a cluster reads once for all its tenants: the
    backend, Isotope's objects on the cluster (``snapshot``: each kind listed once;
    None or a kind left out: ask object by object), and from the database each
    tenant's spec and security groups (by tenant id, for ``tenant_ids``)."""

    backend: KubernetesBackend
    snapshot: ClusterSnapshot | None
    specs: dict[int, TenantSpec] = field(default_factory=dict)
    groups: dict[int, list[GroupPolicySpec]] = field(default_factory=dict)

    def spec_of(self, tenant: Tenant) -> TenantSpec:
        return self.specs.get(tenant.pk) or tenant_spec(tenant)

    def groups_of(self, tenant: Tenant) -> list[GroupPolicySpec]:
        from compute.services.security_groups import group_policy_specs

        found = self.groups.get(tenant.pk)
        return group_policy_specs(tenant) if found is None else found


def reconcile_pass(*, cluster: KubernetesCluster, tenants: list[Tenant]) -> ReconcilePass:
    """List Isotope's objects on ``cluster`` once (a kind whose list fails is left to
    per-object calls), then read the tenants' quotas and security groups in a few
    queries. The lists come first: a security group policy the lists show was made
    from groups the database read already knows, so it is not taken for a stale one."""
    from compute.services.security_groups import group_policy_specs_of

    backend = cluster_backend(cluster)
    snapshot = backend.snapshot()
    ids = [tenant.pk for tenant in tenants]
    by_id = {tenant.pk: tenant for tenant in tenants}
    specs = {
        quota.tenant_id: _tenant_spec(by_id[quota.tenant_id], quota)
        for quota in Quota.objects.filter(tenant_id__in=ids)
    }
    groups = group_policy_specs_of(ids) if backend.capabilities.get("security_groups") else {}
    return ReconcilePass(backend=backend, snapshot=snapshot, specs=specs, groups=groups)


def security_policies_sync(
    *, tenant: Tenant, cluster: KubernetesCluster, batch: ReconcilePass | None = None
) -> list[str]:
    """Make the tenant's security groups the NetworkPolicies of its namespace on
    ``cluster`` (one allow policy per group; the default-deny stays). Raises the
    backend's errors. ``batch``: the reconcile pass's reads (policies in place cost no
    call)."""
    from compute.services.security_groups import group_policy_specs

    backend = batch.backend if batch else cluster_backend(cluster)
    if not backend.capabilities.get("security_groups"):
        return []
    groups = batch.groups_of(tenant) if batch else group_policy_specs(tenant)
    snapshot = batch.snapshot if batch else None
    return backend.group_policies_sync(tenant.namespace, tenant.slug, groups, snapshot=snapshot)


def namespace_for(tenant: Tenant, cluster: KubernetesCluster) -> TenantNamespace:
    """The tenant's namespace record on ``cluster`` (created, not yet provisioned)."""
    row, _ = TenantNamespace.objects.get_or_create(
        tenant=tenant, cluster=cluster, defaults={"name": tenant.namespace}
    )
    return row


def namespace_ready(*, tenant: Tenant, cluster: KubernetesCluster) -> None:
    """Provision the tenant's namespace on ``cluster`` unless it is ready already."""
    row = TenantNamespace.objects.filter(tenant=tenant, cluster=cluster).first()
    if row is None or not row.ready:
        tenant_provision(tenant=tenant, cluster=cluster)


def namespace_provision(*, actor, row: TenantNamespace) -> ProvisionReport:
    """``tenant_provision`` asked by platform staff for one namespace row: audited
    (``namespace.provision``) with what was created and repaired, or as failed with
    the backend's error, which is raised on."""
    target = f"namespace/{row.cluster.name}/{row.name}"
    try:
        report = tenant_provision(tenant=row.tenant, cluster=row.cluster, row=row)
    except BackendError as error:
        audit_record(
            actor=actor,
            action="namespace.provision",
            tenant=row.tenant,
            target=target,
            outcome=AuditOutcome.FAILED,
            detail={"error": str(error)[:500]},
        )
        raise
    audit_record(
        actor=actor,
        action="namespace.provision",
        tenant=row.tenant,
        target=target,
        detail={"created": list(report.created), "repaired": list(report.repaired)},
    )
    return report


def tenant_provision(
    *,
    tenant: Tenant,
    cluster: KubernetesCluster,
    row: TenantNamespace | None = None,
    batch: ReconcilePass | None = None,
) -> ProvisionReport:
    """Create or repair the tenant's namespace objects on ``cluster`` (idempotent).

    Raises the backend's errors (tasks retry transient ones); records the outcome on the
    namespace row (``row``: the caller's, when it has read it) and as an event of kind
    ``namespace``. A pass that finds everything in place and the row ready writes
    nothing (the reconciler runs this for every tenant every 30 s); ``provisioned`` is
    when objects were last created or repaired. ``batch``: the reconcile pass's lists
    and reads (``reconcile_pass``): objects they show in place cost no API call.
    """
    row = row or namespace_for(tenant, cluster)
    try:
        if batch is None:
            batch = ReconcilePass(backend=cluster_backend(cluster), snapshot=None)
        report = batch.backend.ensure_tenant(batch.spec_of(tenant), snapshot=batch.snapshot)
    except BackendError as error:
        TenantNamespace.objects.filter(pk=row.pk).update(ready=False, message=str(error)[:1000])
        raise
    security_policies_sync(tenant=tenant, cluster=cluster, batch=batch)
    first = row.provisioned is None
    outcome = TenantNamespace.objects.filter(pk=row.pk)
    if not (first or report.changed):
        # Compare-and-set: only a row that is not ready (a failure meanwhile, too).
        outcome = outcome.exclude(ready=True, message="")
    outcome.update(ready=True, message="", provisioned=timezone.now())
    if report.created and first:
        event_publish(
            tenant=tenant,
            kind="namespace",
            name=row.name,
            reason="Provisioned",
            message=texts.PROVISIONED
            % {
                "namespace": row.name,
                "cluster": cluster.name,
                "objects": ", ".join(report.created),
            },
        )
    elif report.changed:
        drift = (
            texts.DRIFT_RECREATED_REVERTED
            if report.created and report.repaired
            else texts.DRIFT_RECREATED
            if report.created
            else texts.DRIFT_REVERTED
        )
        event_publish(
            tenant=tenant,
            kind="namespace",
            name=row.name,
            type="Warning",
            reason="DriftRepaired",
            message=drift
            % {
                "namespace": row.name,
                "cluster": cluster.name,
                "created": ", ".join(report.created),
                "repaired": ", ".join(report.repaired),
            },
        )
    return report
