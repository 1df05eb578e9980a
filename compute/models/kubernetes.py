"""Kubernetes clusters, tenant namespaces on them, and container workloads."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q

from compute.choices import Phase, ServiceType, WorkloadKind
from portal.models import Resource
from tenants.models import DNS_LABEL


class KubernetesCluster(models.Model):
    """One Kubernetes API server. The kubeconfig is stored encrypted under a key derived
    from ``SECRET_KEY`` (``monitoring.crypto``) and is never shown back."""

    name = models.SlugField(
        max_length=63,
        unique=True,
    )
    server = models.CharField(
        max_length=255,
        blank=True,
        editable=False,
        help_text="API server URL, read from the kubeconfig.",
    )
    kubeconfig_encrypted = models.TextField(
        editable=False,
    )
    default = models.BooleanField(
        default=False,
        help_text="New workloads go to the default cluster.",
    )
    enabled = models.BooleanField(
        default=True,
    )
    reachable = models.BooleanField(
        default=False,
    )
    last_seen = models.DateTimeField(
        null=True,
        blank=True,
    )
    message = models.CharField(
        max_length=500,
        blank=True,
        help_text="Why the cluster is unreachable, when it is.",
    )
    version = models.CharField(
        max_length=64,
        blank=True,
        editable=False,
    )
    capacity = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="Ready nodes and their allocatable cpu (cores), memory (MiB) and pods.",
    )
    capabilities = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="What the cluster can do (logs: its nodes run containers).",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["default"],
                condition=Q(default=True),
                name="%(app_label)s_%(class)s_one_default",
                violation_error_message="Only one cluster can be the default.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def can(self, capability: str) -> bool:
        return bool(self.capabilities.get(capability))


class TenantNamespace(models.Model):
    """A tenant's namespace on one cluster and how its provisioning went."""

    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.CASCADE,
        related_name="namespaces",
    )
    cluster = models.ForeignKey(
        KubernetesCluster,
        on_delete=models.CASCADE,
        related_name="namespaces",
    )
    name = models.CharField(
        max_length=63,
    )
    ready = models.BooleanField(
        default=False,
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
    )
    provisioned = models.DateTimeField(
        null=True,
        blank=True,
    )

    class Meta:
        ordering = ["cluster", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "cluster"],
                name="%(app_label)s_%(class)s_unique_tenant_cluster",
                violation_error_message="The tenant already has a namespace on this cluster.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cluster}/{self.name}"


class Workload(Resource):
    """A container workload: a Deployment or a single Pod, with an optional Service.

    CPU is kept in millicores and memory in bytes, exactly as parsed from quantities
    such as ``500m`` and ``256Mi``; the quota is charged in cores and MiB.
    """

    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="workloads",
    )
    cluster = models.ForeignKey(
        KubernetesCluster,
        on_delete=models.PROTECT,
        related_name="workloads",
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
    )
    kind = models.CharField(
        max_length=12,
        choices=WorkloadKind.choices,
        default=WorkloadKind.DEPLOYMENT,
    )
    image = models.CharField(
        max_length=255,
    )
    command = models.JSONField(
        default=list,
        blank=True,
    )
    args = models.JSONField(
        default=list,
        blank=True,
    )
    env = models.JSONField(
        default=dict,
        blank=True,
    )
    ports = models.JSONField(
        default=list,
        blank=True,
        help_text="Container ports (numbers).",
    )
    cpu_request_m = models.PositiveIntegerField(
        help_text="CPU request per pod in millicores.",
    )
    cpu_limit_m = models.PositiveIntegerField(
        help_text="CPU limit per pod in millicores.",
    )
    memory_request = models.PositiveBigIntegerField(
        help_text="Memory request per pod in bytes.",
    )
    memory_limit = models.PositiveBigIntegerField(
        help_text="Memory limit per pod in bytes.",
    )
    replicas = models.PositiveIntegerField(
        default=1,
        validators=[MaxValueValidator(1000)],
    )
    service_type = models.CharField(
        max_length=12,
        choices=ServiceType.choices,
        default=ServiceType.NONE,
        blank=True,
    )
    volumes = models.JSONField(
        default=list,
        blank=True,
        help_text='Volume claims its pods mount: [{"volume", "mountPath", "readOnly"}].',
    )
    restarted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a rollout restart was last asked for.",
    )
    deleting = models.BooleanField(
        default=False,
    )
    generation = models.PositiveBigIntegerField(
        default=1,
        editable=False,
        help_text="Grows whenever the spec changes (scale, restart, delete); applied "
        "objects carry it, so an observation of an older spec is recognised.",
    )
    refused_generation = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="The generation the API server refused for quota (its reservation was "
        "released then); a later spec change is tried again.",
    )
    phase = models.CharField(
        max_length=16,
        choices=Phase.choices,
        default=Phase.PENDING,
        db_index=True,
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
    )
    phase_changed = models.DateTimeField(
        auto_now_add=True,
    )
    ready_replicas = models.PositiveIntegerField(
        default=0,
    )
    available_replicas = models.PositiveIntegerField(
        default=0,
    )
    pods = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="Observed pods: name, phase, node, restarts, ready (from the watch).",
    )
    labels = models.JSONField(
        default=dict,
        blank=True,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="%(app_label)s_%(class)s_unique_name_tenant",
                violation_error_message="A workload with this name exists in the tenant.",
            ),
            models.CheckConstraint(
                condition=Q(cpu_limit_m__gte=models.F("cpu_request_m"))
                & Q(memory_limit__gte=models.F("memory_request")),
                name="%(app_label)s_%(class)s_limits_cover_requests",
                violation_error_message="Limits must be at least the requests.",
            ),
            models.CheckConstraint(
                condition=Q(kind=WorkloadKind.DEPLOYMENT) | Q(replicas=1),
                name="%(app_label)s_%(class)s_pod_has_one_replica",
                violation_error_message="A single pod has exactly one replica.",
            ),
        ]
        indexes = [models.Index(fields=["cluster", "phase"])]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"

    @property
    def namespace(self) -> str:
        return self.tenant.namespace

    @property
    def quota_ref(self) -> str:
        return f"workload:{self.uid}"


__all__ = ["KubernetesCluster", "TenantNamespace", "Workload"]
