"""VM pools: a template and a number of replicas; the members are ordinary VMs.

A pool's members are :class:`~compute.models.VirtualMachine` rows with ``pool`` set,
named ``<pool>-<n>`` (``n`` from ``next_index``, never reused while the pool lives) and
labelled ``isotope.dev/pool=<pool>``. Each is created through ``vm_create``, so it is
charged to the quota, scheduled and provisioned exactly as a single VM. The pool
controller (``compute.services.pools.pool_reconcile``) converges the members to
``replicas`` and records what it sees in the status fields.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from compute.choices import AutoscalerMetric, PoolPhase, PoolStrategy, RestartPolicy, WarmMode
from portal.models import Resource
from tenants.models import DNS_LABEL

# The label every member carries (its value: the pool's name).
POOL_LABEL = "isotope.dev/pool"
MAX_REPLICAS = 100
# A member's name is "<pool>-<n>" and must stay a DNS label (63 characters).
MAX_POOL_NAME = 56


class VMPool(Resource):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="vm_pools",
        verbose_name=_("tenant"),
        db_index=False,
    )
    name = models.CharField(
        max_length=MAX_POOL_NAME,
        validators=[DNS_LABEL],
        verbose_name=_("name"),
    )
    image = models.ForeignKey(
        "compute.Image",
        on_delete=models.PROTECT,
        related_name="pools",
        verbose_name=_("image"),
    )
    vcpus = models.PositiveSmallIntegerField(
        verbose_name=_("vCPUs"),
    )
    memory_mib = models.PositiveIntegerField(
        verbose_name=_("memory (MiB)"),
    )
    disk_gib = models.PositiveIntegerField(
        default=0,
        verbose_name=_("disk (GiB)"),
    )
    labels = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Labels of the pool and of every member (beside isotope.dev/pool)."),
        verbose_name=_("labels"),
    )
    restart_policy = models.CharField(
        max_length=10,
        choices=RestartPolicy.choices,
        default=RestartPolicy.ON_FAILURE,
        verbose_name=_("restart policy"),
    )
    replicas = models.PositiveIntegerField(
        default=1,
        validators=[MaxValueValidator(MAX_REPLICAS)],
        verbose_name=_("replicas"),
    )
    deleting = models.BooleanField(
        default=False,
        verbose_name=_("deleting"),
    )
    template_generation = models.PositiveBigIntegerField(
        default=1,
        editable=False,
        help_text=_("Grows whenever the template (image, size, restart policy) changes."),
    )
    max_unavailable = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(MAX_REPLICAS)],
        help_text=_(
            "Rolling update: members that may be down at once (one extra member is "
            "created first when the quota has room for it)."
        ),
    )
    strategy = models.CharField(
        max_length=8,
        choices=PoolStrategy.choices,
        default=PoolStrategy.ROLLING,
        help_text=_(
            "How a template change replaces the members: rolling (a few at a time) "
            "or recreate (every old member deleted first, then the new ones made)."
        ),
        verbose_name=_("update strategy"),
    )
    paused = models.BooleanField(
        default=False,
        help_text=_("A paused rolling update replaces no more members until resumed."),
    )
    warm = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(MAX_REPLICAS)],
        help_text=_(
            "Members kept defined and stopped beyond the replicas, started first on a "
            "scale-up (each charged to the quota as any VM)."
        ),
    )
    warm_mode = models.CharField(
        max_length=8,
        choices=WarmMode.choices,
        default=WarmMode.STOPPED,
        help_text=_(
            "stopped: warm members are defined and stopped (a scale-up boots them); "
            "paused: booted, then suspended (a scale-up resumes them)."
        ),
        verbose_name=_("warm mode"),
    )
    generation = models.PositiveBigIntegerField(
        default=1,
        editable=False,
        help_text=_("Grows whenever the spec changes (scale, delete)."),
        verbose_name=_("generation"),
    )
    observed_generation = models.PositiveBigIntegerField(
        default=0,
        editable=False,
        help_text=_("The generation the controller last converged towards."),
        verbose_name=_("observed generation"),
    )
    next_index = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text=_("The n of the next member's name <pool>-<n>."),
        verbose_name=_("next index"),
    )
    phase = models.CharField(
        max_length=12,
        choices=PoolPhase.choices,
        default=PoolPhase.PENDING,
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
    current_replicas = models.PositiveIntegerField(
        default=0,
        help_text=_("Members that exist and are not being deleted."),
        verbose_name=_("current replicas"),
    )
    available_replicas = models.PositiveIntegerField(
        default=0,
        help_text=_("Members whose domain is Running."),
        verbose_name=_("available replicas"),
    )
    ready_replicas = models.PositiveIntegerField(
        default=0,
        help_text=_("Members Running with their guest Ready."),
        verbose_name=_("ready replicas"),
    )
    updated_replicas = models.PositiveIntegerField(
        default=0,
        help_text=_("Members of the current template that are Running and Ready."),
    )
    warm_replicas = models.PositiveIntegerField(
        default=0,
        help_text=_(
            "Warm members ready to use: Stopped (warm mode stopped) or Paused (warm mode paused)."
        ),
    )
    rollout_failed = models.BooleanField(
        default=False,
        help_text=_("A member of the current template failed: the rolling update stopped."),
    )
    rollout_message = models.CharField(
        max_length=1000,
        blank=True,
        help_text=_("How the rolling update goes (why it stopped, a quota fallback)."),
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
        verbose_name = _("VM pool")
        verbose_name_plural = _("VM pools")
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="%(app_label)s_%(class)s_unique_name_tenant",
                violation_error_message="A VM pool with this name exists in the tenant.",
            ),
            models.CheckConstraint(
                condition=Q(vcpus__gte=1) & Q(memory_mib__gte=64),
                name="%(app_label)s_%(class)s_minimum_size",
                violation_error_message="A member needs at least 1 vCPU and 64 MiB.",
            ),
            models.CheckConstraint(
                condition=Q(warm__lte=MAX_REPLICAS) & Q(max_unavailable__lte=MAX_REPLICAS),
                name="%(app_label)s_%(class)s_warm_at_most_max",
                violation_error_message=f"A pool keeps at most {MAX_REPLICAS} warm members.",
            ),
            models.CheckConstraint(
                condition=Q(replicas__lte=MAX_REPLICAS),
                name="%(app_label)s_%(class)s_replicas_at_most_max",
                violation_error_message=f"A pool has at most {MAX_REPLICAS} replicas.",
            ),
        ]
        indexes = [models.Index(fields=["phase"], name="compute_vmpool_phase")]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"

    def member_name(self, index: int) -> str:
        return f"{self.name}-{index}"


class Autoscaler(Resource):
    """Scales one target: a VM pool on its members' utilisation, with the algorithm of
    the Kubernetes HorizontalPodAutoscaler (v2) (see ``compute.services.autoscalers``),
    or a Deployment workload, through a real HorizontalPodAutoscaler object in the
    tenant's namespace whose status is read back here (``compute.services.hpa``).

    ``recommendations`` keeps the recent recommendations (``[{"t", "replicas"}]``, the
    scale-down stabilisation window's worth) and ``scale_events`` the recent changes
    (``[{"t", "delta"}]``, one rate-limit period's worth) that the algorithm needs from
    one run to the next; ``decisions`` the last few changes made, for people;
    ``history`` the replicas and the measured metric of each run of the last hour (the
    pool page's chart)."""

    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="autoscalers",
        verbose_name=_("tenant"),
        db_index=False,
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
        verbose_name=_("name"),
    )
    pool = models.OneToOneField(
        VMPool,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="autoscaler",
        verbose_name=_("pool"),
    )
    workload = models.OneToOneField(
        "compute.Workload",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="autoscaler",
        help_text=_("A Deployment scaled by a HorizontalPodAutoscaler (instead of a pool)."),
        verbose_name=_("workload"),
    )
    min_replicas = models.PositiveIntegerField(
        default=1,
        validators=[MaxValueValidator(MAX_REPLICAS)],
        help_text=_(
            "0 allows scaling to zero (the pool or Deployment then stays at zero until scaled "
            "by hand)."
        ),
        verbose_name=_("minimum replicas"),
    )
    max_replicas = models.PositiveIntegerField(
        validators=[MaxValueValidator(MAX_REPLICAS)],
        verbose_name=_("maximum replicas"),
    )
    metric = models.CharField(
        max_length=8,
        choices=AutoscalerMetric.choices,
        default=AutoscalerMetric.CPU,
        verbose_name=_("metric"),
    )
    target = models.PositiveSmallIntegerField(
        help_text=_("The wanted average utilisation of the members, in percent (1-100)."),
        verbose_name=_("target utilisation (%)"),
    )
    scale_down_window_seconds = models.PositiveIntegerField(
        default=300,
        help_text=_("Scale down only to the highest recommendation of this window."),
        verbose_name=_("scale-down window (seconds)"),
    )
    scale_up_pods = models.PositiveIntegerField(
        default=4,
        help_text=_("Members that may be added per period (or scale_up_percent, the larger)."),
        verbose_name=_("scale up pods"),
    )
    scale_up_percent = models.PositiveIntegerField(
        default=100,
        help_text=_("Percent of the members that may be added per period."),
        verbose_name=_("scale up percent"),
    )
    scale_down_percent = models.PositiveIntegerField(
        default=100,
        validators=[MaxValueValidator(100)],
        help_text=_("Percent of the members that may be removed per period."),
        verbose_name=_("scale down percent"),
    )
    generation = models.PositiveBigIntegerField(
        default=1,
        editable=False,
        verbose_name=_("generation"),
    )
    current_metric = models.FloatField(
        null=True,
        blank=True,
        help_text=_("The members' average utilisation at the last run (percent)."),
        verbose_name=_("current metric"),
    )
    desired_replicas = models.PositiveIntegerField(
        null=True,
        blank=True,
        verbose_name=_("desired replicas"),
    )
    reason = models.CharField(
        max_length=40,
        blank=True,
        help_text=_("Why the last run decided as it did (HPA's condition reasons)."),
        verbose_name=_("reason"),
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
        verbose_name=_("message"),
    )
    current_replicas = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=_("A Deployment's replicas as its HorizontalPodAutoscaler last saw them."),
        verbose_name=_("current replicas"),
    )
    conditions = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text=_("A HorizontalPodAutoscaler's conditions: type, status, reason, message."),
        verbose_name=_("conditions"),
    )
    last_run = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("last run"),
    )
    last_scale_time = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("last scale time"),
    )
    recommendations = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        verbose_name=_("recommendations"),
    )
    scale_events = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        verbose_name=_("scale events"),
    )
    decisions = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text=_("The last changes made: time, from, to, metric, reason."),
        verbose_name=_("decisions"),
    )
    history = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text=_("One point per run of the last hour: time, the pool's replicas, the metric."),
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
        verbose_name = _("autoscaler")
        verbose_name_plural = _("autoscalers")
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                name="%(app_label)s_%(class)s_unique_name_tenant",
                violation_error_message="An autoscaler with this name exists in the tenant.",
            ),
            models.CheckConstraint(
                condition=Q(min_replicas__lte=models.F("max_replicas"))
                & Q(max_replicas__gte=1)
                & Q(max_replicas__lte=MAX_REPLICAS),
                name="%(app_label)s_%(class)s_min_at_most_max",
                violation_error_message="min ≤ max, and max between 1 and the pool limit.",
            ),
            models.CheckConstraint(
                condition=Q(pool__isnull=False, workload__isnull=True)
                | Q(pool__isnull=True, workload__isnull=False),
                name="%(app_label)s_%(class)s_exactly_one_target",
                violation_error_message="An autoscaler targets either a VM pool or a Deployment.",
            ),
            models.CheckConstraint(
                condition=Q(target__gte=1) & Q(target__lte=100),
                name="%(app_label)s_%(class)s_target_is_a_percentage",
                violation_error_message="The target is a percentage (1-100).",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"

    @property
    def target_kind(self) -> str:
        """``VMPool`` or ``Deployment``, as in the API's ``scaleTargetRef``."""
        return "VMPool" if self.pool_id else "Deployment"

    @property
    def target_name(self) -> str:
        return self.pool.name if self.pool_id else self.workload.name
