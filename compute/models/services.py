"""Services: one load-balanced name of a tenant in front of its VMs and pods.

A :class:`Service` selects the tenant's VMs and workloads by label (``selector``, every
entry must match) and forwards ``ports``. On its cluster it is a Kubernetes Service
without a selector and one EndpointSlice that Isotope keeps equal to the members:
the ready pods of the matching workloads and the running matching VMs, at the
addresses Isotope knows for their interfaces. ``endpoints`` is what the last sync
wrote (for the pages and the API), measured against ``observed_generation``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from compute.choices import SERVICE_TYPES, ServicePhase, ServiceType
from portal.models import Resource
from tenants.models import DNS_LABEL


class Service(Resource):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="services",
        verbose_name=_("tenant"),
        db_index=False,
    )
    cluster = models.ForeignKey(
        "compute.KubernetesCluster",
        on_delete=models.PROTECT,
        related_name="services",
        verbose_name=_("cluster"),
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
        verbose_name=_("name"),
    )
    service_type = models.CharField(
        max_length=9,
        choices=SERVICE_TYPES,
        default=ServiceType.CLUSTER_IP,
        verbose_name=_("type"),
    )
    selector = models.JSONField(
        default=dict,
        help_text=_("Labels a VM or workload must all carry to be a member."),
        verbose_name=_("selector"),
    )
    ports = models.JSONField(
        default=list,
        help_text=_("name, protocol, port and targetPort of each port."),
        verbose_name=_("ports"),
    )
    generation = models.PositiveBigIntegerField(
        default=1,
        help_text=_("Grows with every change of the spec (selector, ports)."),
        verbose_name=_("generation"),
    )
    observed_generation = models.PositiveBigIntegerField(
        default=0,
        help_text=_("The generation the cluster's objects were last written from."),
        verbose_name=_("observed generation"),
    )
    phase = models.CharField(
        max_length=10,
        choices=ServicePhase.choices,
        default=ServicePhase.PENDING,
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
    cluster_ip = models.CharField(
        max_length=45,
        blank=True,
        verbose_name=_("cluster IP"),
    )
    node_ports = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Port name → node port the cluster chose (NodePort services)."),
        verbose_name=_("node ports"),
    )
    endpoints = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text=_("The members last written: kind, name, address, ready."),
        verbose_name=_("endpoints"),
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
        verbose_name = _("service")
        verbose_name_plural = _("services")
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="%(app_label)s_%(class)s_unique_name_tenant",
                violation_error_message="A service with this name exists in the tenant.",
            ),
        ]
        indexes = [models.Index(fields=["phase"], name="compute_service_phase")]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"

    @property
    def namespace(self) -> str:
        return self.tenant.namespace

    @property
    def deleting(self) -> bool:
        return self.phase == ServicePhase.DELETING

    @property
    def ready_count(self) -> int:
        return sum(1 for member in self.endpoints or [] if member.get("ready"))

    def selects(self, labels: dict | None) -> bool:
        """Whether an object with ``labels`` is a member (an empty selector selects
        nothing, unlike Kubernetes' "everything")."""
        labels = labels or {}
        return bool(self.selector) and all(
            labels.get(key) == value for key, value in self.selector.items()
        )
