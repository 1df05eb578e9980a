"""Usage accounting: what was metered, its rollups, prices, quota requests and alerts.

Quantities are kept as exact integers: allocated sizes times milliseconds
(``cpu_millicore_ms`` = millicores × ms, ``memory_mib_ms`` = MiB × ms, ...), so sums
never drift; :mod:`usage.selectors` turns them into unit-hours for people.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from portal.models import Resource
from tenants.models import Tenant
from usage.choices import QuotaRequestState

CURRENCY = RegexValidator(r"^[A-Z]{3}$", "A three-letter ISO 4217 code, e.g. EUR.")


class UsageSubject(models.Model):
    """One metered thing (a VM, a workload, an image, ...): the holder of a ledger
    ``ref``. Its name and labels are copied from the object while it exists, so usage
    stays readable after the object, or its tenant, is gone."""

    ref = models.CharField(
        max_length=200,
        unique=True,
        verbose_name=_("reference"),
    )
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("tenant"),
    )
    tenant_slug = models.CharField(
        max_length=40,
        verbose_name=_("tenant slug"),
    )
    kind = models.CharField(
        max_length=16,
        verbose_name=_("kind"),
    )
    object_id = models.CharField(
        max_length=64,
        blank=True,
        verbose_name=_("object ID"),
    )
    name = models.CharField(
        max_length=253,
        blank=True,
        verbose_name=_("name"),
    )
    labels = models.JSONField(
        default=dict,
        blank=True,
        verbose_name=_("labels"),
    )
    created = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("created"),
    )

    class Meta:
        verbose_name = _("usage subject")
        verbose_name_plural = _("usage subjects")
        indexes = [models.Index(fields=["kind", "object_id"], name="usage_subject_kind_object")]

    def __str__(self) -> str:
        return f"{self.kind}/{self.name or self.ref}"

    @property
    def display_name(self) -> str:
        return self.name or self.ref


class UsageInterval(models.Model):
    """A stretch of time during which one reservation held a constant size.

    Append-only: a row is inserted when a reservation opens and its ``end`` is set once,
    when it is released, in the same transaction as the ledger change. A resize is a
    release and a new reservation: one interval ends, the next begins.
    """

    subject = models.ForeignKey(
        UsageSubject,
        on_delete=models.CASCADE,
        related_name="intervals",
        verbose_name=_("subject"),
    )
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("tenant"),
    )
    reservation_id = models.BigIntegerField(
        null=True,
        blank=True,
        help_text=_("The tenants.Reservation this interval meters (gone with its tenant)."),
        verbose_name=_("reservation ID"),
    )
    start = models.DateTimeField(verbose_name=_("start"))
    end = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("end"),
    )
    cpu = models.DecimalField(
        max_digits=10,
        decimal_places=3,
        default=Decimal(0),
        verbose_name=_("CPU"),
    )
    memory = models.BigIntegerField(
        default=0,
        help_text=_("MiB"),
        verbose_name=_("memory"),
    )
    storage = models.BigIntegerField(
        default=0,
        help_text=_("GiB"),
        verbose_name=_("storage"),
    )
    vms = models.IntegerField(
        default=0,
        verbose_name=_("VMs"),
    )
    pods = models.IntegerField(
        default=0,
        verbose_name=_("pods"),
    )

    class Meta:
        verbose_name = _("usage interval")
        verbose_name_plural = _("usage intervals")
        ordering = ["start", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reservation_id"],
                condition=Q(reservation_id__isnull=False),
                name="%(app_label)s_%(class)s_unique_reservation",
                violation_error_message="A reservation is metered by one interval.",
            ),
            models.CheckConstraint(
                condition=Q(end__isnull=True) | Q(end__gte=F("start")),
                name="%(app_label)s_%(class)s_end_after_start",
                violation_error_message="An interval cannot end before it starts.",
            ),
        ]
        indexes = [
            models.Index(fields=["start"], name="usage_interval_start"),
            models.Index(fields=["end"], name="usage_interval_end"),
            models.Index(
                fields=["start"], condition=Q(end__isnull=True), name="usage_interval_open"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject_id} {self.start:%Y-%m-%d %H:%M}–{self.end or 'now'}"


class UsageAmounts(models.Model):
    """Allocated (from intervals) and used (from VM metrics) amounts over one period."""

    subject = models.ForeignKey(
        UsageSubject,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("subject"),
        db_index=False,
    )
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("tenant"),
        db_index=False,
    )
    cpu_millicore_ms = models.BigIntegerField(
        default=0,
        verbose_name=_("CPU (millicore-ms)"),
    )
    memory_mib_ms = models.BigIntegerField(
        default=0,
        verbose_name=_("memory (MiB-ms)"),
    )
    storage_gib_ms = models.BigIntegerField(
        default=0,
        verbose_name=_("storage (GiB-ms)"),
    )
    vm_ms = models.BigIntegerField(
        default=0,
        verbose_name=_("VM time (ms)"),
    )
    pod_ms = models.BigIntegerField(
        default=0,
        verbose_name=_("pod time (ms)"),
    )
    cpu_used_millicore_ms = models.BigIntegerField(
        default=0,
        verbose_name=_("used CPU (millicore-ms)"),
    )
    memory_used_mib_ms = models.BigIntegerField(
        default=0,
        verbose_name=_("used memory (MiB-ms)"),
    )
    samples = models.IntegerField(
        default=0,
        help_text=_("Metric samples the used amounts come from."),
        verbose_name=_("samples"),
    )

    class Meta:
        abstract = True


AMOUNT_FIELDS = [
    "cpu_millicore_ms",
    "memory_mib_ms",
    "storage_gib_ms",
    "vm_ms",
    "pod_ms",
    "cpu_used_millicore_ms",
    "memory_used_mib_ms",
    "samples",
]
ALLOCATED_FIELDS = AMOUNT_FIELDS[:5]
USED_FIELDS = AMOUNT_FIELDS[5:]


class UsageHourly(UsageAmounts):
    """One subject's usage in one clock hour (UTC) starting at ``hour``."""

    hour = models.DateTimeField(verbose_name=_("hour"))

    class Meta:
        verbose_name = _("usage (hourly)")
        verbose_name_plural = _("usage (hourly)")
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "hour"],
                name="%(app_label)s_%(class)s_unique_subject_hour",
                violation_error_message="One row per subject and hour.",
            ),
        ]
        indexes = [
            models.Index(fields=["hour"], name="usage_hourly_hour"),
            models.Index(fields=["tenant", "hour"], name="usage_hourly_tenant_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.subject_id} at {self.hour:%Y-%m-%d %H:00}"


class UsageDaily(UsageAmounts):
    """One subject's usage in one UTC day: the sum of its hourly rows."""

    day = models.DateField(verbose_name=_("day"))

    class Meta:
        verbose_name = _("usage")
        verbose_name_plural = _("usage")
        constraints = [
            models.UniqueConstraint(
                fields=["subject", "day"],
                name="%(app_label)s_%(class)s_unique_subject_day",
                violation_error_message="One row per subject and day.",
            ),
        ]
        indexes = [
            models.Index(fields=["day"], name="usage_daily_day"),
            models.Index(fields=["tenant", "day"], name="usage_daily_tenant_day"),
        ]

    def __str__(self) -> str:
        return f"{self.subject_id} on {self.day}"


class RollupState(models.Model):
    """How far the hourly rollup has got: every hour before ``through`` is rolled up."""

    name = models.CharField(
        max_length=32,
        primary_key=True,
        verbose_name=_("name"),
    )
    through = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("through"),
    )
    updated = models.DateTimeField(
        auto_now=True,
        verbose_name=_("updated"),
    )

    class Meta:
        verbose_name = _("rollup state")
        verbose_name_plural = _("rollup states")

    def __str__(self) -> str:
        return f"{self.name} through {self.through}"


def _price_field(label) -> models.DecimalField:
    return models.DecimalField(
        max_digits=14,
        decimal_places=6,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0))],
        verbose_name=label,
    )


class PriceList(models.Model):
    """Prices per unit-hour in one currency, valid from one day to another (inclusive).

    A tenant's usage on a day is priced by the list assigned to it that is in effect
    that day, else by a list that ``applies_to_all`` in effect then, else not at all
    (usage is still shown). Among several, the one that took effect last wins.
    """

    name = models.CharField(
        max_length=100,
        verbose_name=_("name"),
    )
    currency = models.CharField(
        max_length=3,
        validators=[CURRENCY],
        default="EUR",
        verbose_name=_("currency"),
    )
    effective_from = models.DateField(verbose_name=_("effective from"))
    effective_to = models.DateField(
        null=True,
        blank=True,
        help_text=_("Last day it applies; empty: until further notice."),
        verbose_name=_("effective to"),
    )
    applies_to_all = models.BooleanField(
        default=False,
        help_text=_("Prices the usage of every tenant that has no list of its own."),
        verbose_name=_("applies to all"),
    )
    tenants = models.ManyToManyField(
        Tenant,
        blank=True,
        related_name="price_lists",
        verbose_name=_("tenants"),
    )
    vcpu_hour = _price_field(_("per vCPU-hour"))
    memory_gib_hour = _price_field(_("per memory GiB-hour"))
    storage_gib_hour = _price_field(_("per storage GiB-hour"))
    vm_hour = _price_field(_("per VM-hour"))
    pod_hour = _price_field(_("per pod-hour"))
    created = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("created"),
    )
    updated = models.DateTimeField(
        auto_now=True,
        verbose_name=_("updated"),
    )

    class Meta:
        verbose_name = _("price list")
        verbose_name_plural = _("price lists")
        ordering = ["-effective_from", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gte=F("effective_from")),
                name="%(app_label)s_%(class)s_to_after_from",
                violation_error_message="A price list cannot end before it starts.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency}, from {self.effective_from})"

    def rate(self, metric: str) -> Decimal:
        """The price of one unit-hour of ``metric`` (``usage.choices.Metric``)."""
        field = PRICED_METRICS.get(metric)
        return getattr(self, field) if field else Decimal(0)


# Metric → the PriceList field that prices it. Used amounts are shown, not priced.
PRICED_METRICS = {
    "vcpu_hours": "vcpu_hour",
    "memory_gib_hours": "memory_gib_hour",
    "storage_gib_hours": "storage_gib_hour",
    "vm_hours": "vm_hour",
    "pod_hours": "pod_hour",
}


class QuotaRequest(Resource):
    """A tenant admin's request for more quota, and the platform's decision on it."""

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        related_name="quota_requests",
        verbose_name=_("tenant"),
    )
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("requester"),
    )
    requester_name = models.CharField(
        max_length=150,
        blank=True,
        verbose_name=_("requester name"),
    )
    increase = models.JSONField(
        default=dict,
        help_text=_("Asked-for increase per quota resource, e.g. {'vms': 2}."),
        verbose_name=_("increase"),
    )
    reason = models.TextField(
        max_length=1000,
        verbose_name=_("reason"),
    )
    state = models.CharField(
        max_length=24,
        choices=QuotaRequestState.choices,
        default=QuotaRequestState.PENDING,
        verbose_name=_("state"),
    )
    granted = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Increase granted per resource (may be less than asked)."),
        verbose_name=_("granted"),
    )
    limits_before = models.JSONField(
        default=dict,
        blank=True,
        verbose_name=_("limits before"),
    )
    limits_after = models.JSONField(
        default=dict,
        blank=True,
        verbose_name=_("limits after"),
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )
    decided_by_name = models.CharField(
        max_length=150,
        blank=True,
        verbose_name=_("decided by (name)"),
    )
    decided = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("decided"),
    )
    decision_reason = models.TextField(
        max_length=1000,
        blank=True,
        verbose_name=_("decision reason"),
    )
    auto_approved = models.BooleanField(
        default=False,
        verbose_name=_("auto-approved"),
    )

    class Meta:
        verbose_name = _("quota request")
        verbose_name_plural = _("quota requests")
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"],
                condition=Q(state="Pending"),
                name="%(app_label)s_%(class)s_one_pending_per_tenant",
                violation_error_message="This tenant already has a pending quota request.",
            ),
        ]
        indexes = [models.Index(fields=["state", "created"], name="usage_request_state")]

    def __str__(self) -> str:
        return f"{self.name} of {self.tenant}"

    @property
    def name(self) -> str:
        """The request's name in events and live updates (``qr-<id>``)."""
        return f"qr-{self.pk}"

    @property
    def pending(self) -> bool:
        return self.state == QuotaRequestState.PENDING


class QuotaAutoApproval(models.Model):
    """Approve a tenant's small requests without waiting for staff: each asked-for
    increase at most ``max_percent`` % of the current limit, and at most one such
    approval per ``period_days``."""

    tenant = models.OneToOneField(
        Tenant,
        on_delete=models.CASCADE,
        related_name="quota_auto_approval",
        verbose_name=_("tenant"),
    )
    enabled = models.BooleanField(
        default=True,
        verbose_name=_("enabled"),
    )
    max_percent = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1)],
        verbose_name=_("max percent"),
    )
    period_days = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        verbose_name=_("period (days)"),
    )

    class Meta:
        verbose_name = _("quota auto-approval rule")
        verbose_name_plural = _("quota auto-approval rules")

    def __str__(self) -> str:
        return f"{self.tenant}: up to +{self.max_percent} % every {self.period_days} days"


class QuotaAlert(models.Model):
    """The highest "nearly exhausted" level last announced for one quota resource, so
    each crossing is announced once; it falls back when usage drops below again."""

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("tenant"),
        db_index=False,
    )
    resource = models.CharField(
        max_length=16,
        verbose_name=_("resource"),
    )
    level = models.PositiveSmallIntegerField(
        default=0,
        verbose_name=_("level"),
    )
    changed = models.DateTimeField(
        auto_now=True,
        verbose_name=_("changed"),
    )

    class Meta:
        verbose_name = _("quota alert")
        verbose_name_plural = _("quota alerts")
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "resource"],
                name="%(app_label)s_%(class)s_unique_tenant_resource",
                violation_error_message="One alert state per tenant and resource.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} {self.resource} ≥ {self.level} %"
