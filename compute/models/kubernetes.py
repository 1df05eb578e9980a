"""Kubernetes clusters, tenant namespaces on them, and container workloads."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from compute.choices import Phase, ServiceType, WorkloadKind
from portal.models import Resource
from tenants.models import DNS_LABEL


class KubernetesCluster(models.Model):
    """One Kubernetes API server. The kubeconfig is stored encrypted under a key derived
    from ``SECRET_KEY`` (``monitoring.crypto``) and is never shown back."""

    name = models.SlugField(
        max_length=63,
        unique=True,
        verbose_name=_("name"),
    )
    server = models.CharField(
        max_length=255,
        blank=True,
        editable=False,
        help_text=_("API server URL, read from the kubeconfig."),
        verbose_name=_("server"),
    )
    kubeconfig_encrypted = models.TextField(
        editable=False,
        verbose_name=_("kubeconfig (encrypted)"),
    )
    default = models.BooleanField(
        default=False,
        help_text=_("New workloads go to the default cluster."),
        verbose_name=_("default"),
    )
    enabled = models.BooleanField(
        default=True,
        verbose_name=_("enabled"),
    )
    reachable = models.BooleanField(
        default=False,
        verbose_name=_("reachable"),
    )
    last_seen = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("last seen"),
    )
    message = models.CharField(
        max_length=500,
        blank=True,
        help_text=_("Why the cluster is unreachable, when it is."),
        verbose_name=_("message"),
    )
    version = models.CharField(
        max_length=64,
        blank=True,
        editable=False,
        verbose_name=_("version"),
    )
    capacity = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text=_("Ready nodes and their allocatable cpu (cores), memory (MiB) and pods."),
        verbose_name=_("capacity"),
    )
    capabilities = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text=_("What the cluster can do (logs: its nodes run containers)."),
        verbose_name=_("capabilities"),
    )

    class Meta:
        verbose_name = _("Kubernetes cluster")
        verbose_name_plural = _("Kubernetes clusters")
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
        verbose_name=_("tenant"),
        db_index=False,
    )
    cluster = models.ForeignKey(
        KubernetesCluster,
        on_delete=models.CASCADE,
        related_name="namespaces",
        verbose_name=_("cluster"),
    )
    name = models.CharField(
        max_length=63,
        verbose_name=_("name"),
    )
    ready = models.BooleanField(
        default=False,
        verbose_name=_("ready"),
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
        verbose_name=_("message"),
    )
    provisioned = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("provisioned"),
    )

    class Meta:
        verbose_name = _("tenant namespace")
        verbose_name_plural = _("tenant namespaces")
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
        verbose_name=_("tenant"),
        db_index=False,
    )
    cluster = models.ForeignKey(
        KubernetesCluster,
        on_delete=models.PROTECT,
        related_name="workloads",
        verbose_name=_("cluster"),
        db_index=False,
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
        verbose_name=_("name"),
    )
    kind = models.CharField(
        max_length=12,
        choices=WorkloadKind.choices,
        default=WorkloadKind.DEPLOYMENT,
        verbose_name=_("kind"),
    )
    image = models.CharField(
        max_length=255,
        verbose_name=_("image"),
    )
    command = models.JSONField(
        default=list,
        blank=True,
        verbose_name=_("command"),
    )
    args = models.JSONField(
        default=list,
        blank=True,
        verbose_name=_("arguments"),
    )
    env = models.JSONField(
        default=dict,
        blank=True,
        verbose_name=_("environment"),
    )
    ports = models.JSONField(
        default=list,
        blank=True,
        help_text=_("Container ports (numbers)."),
        verbose_name=_("ports"),
    )
    cpu_request_m = models.PositiveIntegerField(
        help_text=_("CPU request per pod in millicores."),
        verbose_name=_("CPU request (millicores)"),
    )
    cpu_limit_m = models.PositiveIntegerField(
        help_text=_("CPU limit per pod in millicores."),
        verbose_name=_("CPU limit (millicores)"),
    )
    memory_request = models.PositiveBigIntegerField(
        help_text=_("Memory request per pod in bytes."),
        verbose_name=_("memory request"),
    )
    memory_limit = models.PositiveBigIntegerField(
        help_text=_("Memory limit per pod in bytes."),
        verbose_name=_("memory limit"),
    )
    replicas = models.PositiveIntegerField(
        default=1,
        validators=[MaxValueValidator(1000)],
        verbose_name=_("replicas"),
    )
    service_type = models.CharField(
        max_length=12,
        choices=ServiceType.choices,
        default=ServiceType.NONE,
        blank=True,
        verbose_name=_("service type"),
    )
    volumes = models.JSONField(
        default=list,
        blank=True,
        help_text=_('Volume claims its pods mount: [{"volume", "mountPath", "readOnly"}].'),
        verbose_name=_("volumes"),
    )
    restarted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When a rollout restart was last asked for."),
        verbose_name=_("restarted at"),
    )
    deleting = models.BooleanField(
        default=False,
        verbose_name=_("deleting"),
    )
    generation = models.PositiveBigIntegerField(
        default=1,
        editable=False,
        help_text=_(
            "Grows whenever the spec changes (scale, restart, delete); applied "
            "objects carry it, so an observation of an older spec is recognised."
        ),
        verbose_name=_("generation"),
    )
    refused_generation = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "The generation the API server refused for quota (its reservation was "
            "released then); a later spec change is tried again."
        ),
        verbose_name=_("refused generation"),
    )
    phase = models.CharField(
        max_length=16,
        choices=Phase.choices,
        default=Phase.PENDING,
        verbose_name=_("phase"),
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
        verbose_name=_("message"),
    )
    phase_changed = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("phase changed"),
    )
    ready_replicas = models.PositiveIntegerField(
        default=0,
        verbose_name=_("ready replicas"),
    )
    available_replicas = models.PositiveIntegerField(
        default=0,
        verbose_name=_("available replicas"),
    )
    pods = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text=_("Observed pods: name, phase, node, restarts, ready (from the watch)."),
        verbose_name=_("pods"),
    )
    labels = models.JSONField(
        default=dict,
        blank=True,
        verbose_name=_("labels"),
    )
    security_groups = models.ManyToManyField(
        "compute.SecurityGroup",
        related_name="workloads",
        blank=True,
        help_text=_(
            "What traffic its pods let in (NetworkPolicies of these groups; the tenant's "
            "default group when none is chosen)."
        ),
        verbose_name=_("security groups"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("workload")
        verbose_name_plural = _("workloads")
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
        indexes = [
            models.Index(fields=["cluster", "phase"]),
            models.Index(fields=["phase"], name="compute_workload_phase"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"

    @property
    def namespace(self) -> str:
        return self.tenant.namespace

    @property
    def quota_ref(self) -> str:
        return f"workload:{self.uid}"


__all__ = ["KubernetesCluster", "TenantNamespace", "Workload"]
