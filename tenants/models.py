"""Tenants, memberships, the quota and its ledger, audit log and API tokens."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from portal.models import Resource
from tenants.choices import AuditOutcome, MembershipSource, ReservationKind, Role, Theme

DNS_LABEL = RegexValidator(
    r"\A[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z",  # \Z: "$" accepts a trailing newline
    "Use lowercase letters, digits and hyphens; start and end with a letter or digit.",
)

# Resources the quota limits, with their unit, in display order.
QUOTA_RESOURCES: dict[str, str] = {
    "cpu": "cores",
    "memory": "MiB",
    "storage": "GiB",
    "vms": "VMs",
    "pods": "pods",
    "networks": "networks",
}


QUOTA_LABELS: dict[str, str] = {
    "cpu": _("CPU"),
    "memory": _("Memory"),
    "storage": _("Storage"),
    "vms": _("Virtual machines"),
    "pods": _("Pods"),
    "networks": _("Networks"),
}


class Tenant(Resource):
    slug = models.SlugField(
        max_length=40,
        unique=True,
        validators=[DNS_LABEL],
        help_text=_("Short name used in URLs and the Kubernetes namespace (isotope-<slug>)."),
        verbose_name=_("slug"),
    )
    name = models.CharField(
        max_length=100,
        verbose_name=_("name"),
    )
    description = models.TextField(
        blank=True,
        verbose_name=_("description"),
    )
    require_2fa = models.BooleanField(
        default=False,
        verbose_name=_("require 2FA"),
        help_text=_(
            "Members must have signed in with a second factor (or through single "
            "sign-on) to open this tenant's pages or its API with a browser session. API "
            "tokens are not asked for one."
        ),
    )

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def namespace(self) -> str:
        """Its Kubernetes namespace: ``ISOTOPE_K8S_NAMESPACE_PREFIX`` + its slug."""
        return f"{settings.ISOTOPE_K8S_NAMESPACE_PREFIX}{self.slug}"

    @classmethod
    def slug_of_namespace(cls, namespace: str) -> str:
        """The slug of the tenant whose Kubernetes namespace is ``namespace``; "" (no
        tenant's) for a namespace without this installation's prefix."""
        prefix = settings.ISOTOPE_K8S_NAMESPACE_PREFIX
        return namespace[len(prefix) :] if namespace.startswith(prefix) else ""


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("user"),
        db_index=False,
    )
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        related_name="memberships",
        verbose_name=_("tenant"),
    )
    role = models.CharField(
        max_length=16,
        choices=Role.choices,
        default=Role.VIEWER,
        verbose_name=_("role"),
    )
    source = models.CharField(
        max_length=8,
        choices=MembershipSource.choices,
        default=MembershipSource.LOCAL,
        help_text=_(
            "Single sign-on memberships follow the provider's groups at each sign-in; "
            "local ones are left alone by it."
        ),
        verbose_name=_("source"),
    )
    created = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("created"),
    )

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        ordering = ["tenant__slug", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "tenant"],
                name="%(app_label)s_%(class)s_unique_user_tenant",
                violation_error_message="This user is already a member of the tenant.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class GroupMapping(models.Model):
    """A group of the single sign-on provider grants a role in a tenant.

    Evaluated at every single sign-on (``tenants.services.membership_sync_groups``): a
    user in ``group`` gets ``role`` in ``tenant`` (the highest role when several of their
    groups map to one tenant); a user no longer in any mapped group loses that membership.
    """

    group = models.CharField(
        max_length=200,
        help_text=_("The group's name exactly as the provider's groups claim lists it."),
        verbose_name=_("group"),
    )
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        related_name="group_mappings",
        verbose_name=_("tenant"),
    )
    role = models.CharField(
        max_length=16,
        choices=Role.choices,
        default=Role.VIEWER,
        verbose_name=_("role"),
    )
    created = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("created"),
    )

    class Meta:
        verbose_name = _("group mapping")
        verbose_name_plural = _("group mappings")
        ordering = ["group", "tenant__slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["group", "tenant"],
                name="%(app_label)s_%(class)s_unique_group_tenant",
                violation_error_message="This group is already mapped to the tenant.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.group} → {self.role} of {self.tenant}"


class Quota(Resource):
    """Limits of one tenant and the running totals of its live reservations.

    ``used_*`` are kept equal to the sum of the tenant's unreleased reservations by
    ``quota_reserve``/``quota_release`` under a row lock, so a check costs the same
    whatever the number of resources.
    """

    tenant = models.OneToOneField(
        Tenant,
        on_delete=models.CASCADE,
        related_name="quota",
        verbose_name=_("tenant"),
    )
    cpu = models.DecimalField(
        max_digits=10,
        decimal_places=3,
        validators=[MinValueValidator(Decimal(0))],
        help_text=_("CPU cores (VM vCPUs and pod CPU requests together)."),
        verbose_name=_("CPU cores"),
    )
    memory = models.PositiveBigIntegerField(
        help_text=_("Memory in MiB."),
        verbose_name=_("memory (MiB)"),
    )
    storage = models.PositiveBigIntegerField(
        help_text=_("Disk storage in GiB."),
        verbose_name=_("storage (GiB)"),
    )
    vms = models.PositiveIntegerField(
        help_text=_("Number of virtual machines."),
        verbose_name=_("VMs"),
    )
    pods = models.PositiveIntegerField(
        help_text=_("Number of pods (replicas count one each)."),
        verbose_name=_("pods"),
    )
    networks = models.PositiveIntegerField(
        default=10,
        help_text=_("Number of tenant networks."),
        verbose_name=_("networks"),
    )
    used_cpu = models.DecimalField(
        max_digits=10,
        decimal_places=3,
        default=Decimal(0),
        editable=False,
        verbose_name=_("used CPU"),
    )
    used_memory = models.BigIntegerField(
        default=0,
        editable=False,
        verbose_name=_("used memory"),
    )
    used_storage = models.BigIntegerField(
        default=0,
        editable=False,
        verbose_name=_("used storage"),
    )
    used_vms = models.IntegerField(
        default=0,
        editable=False,
        verbose_name=_("used VMs"),
    )
    used_pods = models.IntegerField(
        default=0,
        editable=False,
        verbose_name=_("used pods"),
    )
    used_networks = models.IntegerField(
        default=0,
        editable=False,
        verbose_name=_("used networks"),
    )

    class Meta:
        verbose_name = _("quota")
        verbose_name_plural = _("quotas")
        constraints = [
            models.CheckConstraint(
                condition=Q(used_cpu__gte=0)
                & Q(used_memory__gte=0)
                & Q(used_storage__gte=0)
                & Q(used_vms__gte=0)
                & Q(used_pods__gte=0)
                & Q(used_networks__gte=0),
                name="%(app_label)s_%(class)s_used_not_negative",
                violation_error_message="Quota usage cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        return f"quota of {self.tenant}"

    def limit(self, resource: str):
        return getattr(self, resource)

    def used(self, resource: str):
        return getattr(self, f"used_{resource}")


class Reservation(models.Model):
    """One resource's charge against its tenant's quota (the usage ledger)."""

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        related_name="reservations",
        verbose_name=_("tenant"),
        db_index=False,
    )
    ref = models.CharField(
        max_length=200,
        help_text=_("Who holds it, e.g. vm:<uid>. One live reservation per ref."),
        verbose_name=_("reference"),
    )
    kind = models.CharField(
        max_length=16,
        choices=ReservationKind.choices,
        default=ReservationKind.OTHER,
        verbose_name=_("kind"),
    )
    object_id = models.CharField(
        max_length=64,
        blank=True,
        verbose_name=_("object ID"),
    )
    cpu = models.DecimalField(
        max_digits=10,
        decimal_places=3,
        default=Decimal(0),
        verbose_name=_("CPU"),
    )
    memory = models.BigIntegerField(
        default=0,
        verbose_name=_("memory"),
    )
    storage = models.BigIntegerField(
        default=0,
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
    networks = models.IntegerField(
        default=0,
        verbose_name=_("networks"),
    )
    created = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("created"),
    )
    released = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("released"),
    )

    class Meta:
        verbose_name = _("reservation")
        verbose_name_plural = _("reservations")
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["ref"],
                condition=Q(released__isnull=True),
                name="%(app_label)s_%(class)s_unique_live_ref",
                violation_error_message="This object already holds a reservation.",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "released"])]

    def __str__(self) -> str:
        return self.ref


class AuditLog(models.Model):
    """Who did what to which object, from where, and how it ended. Append-only."""

    time = models.DateTimeField(
        auto_now_add=True,
        db_index=True,
        verbose_name=_("time"),
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("actor"),
    )
    actor_name = models.CharField(
        max_length=150,
        blank=True,
        help_text=_("Kept when the user is deleted."),
        verbose_name=_("actor name"),
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
        blank=True,
        verbose_name=_("tenant slug"),
    )
    action = models.CharField(
        max_length=64,
        db_index=True,
        verbose_name=_("action"),
    )
    target = models.CharField(
        max_length=255,
        blank=True,
        verbose_name=_("target"),
    )
    outcome = models.CharField(
        max_length=16,
        choices=AuditOutcome.choices,
        default=AuditOutcome.SUCCESS,
        verbose_name=_("outcome"),
    )
    source_ip = models.GenericIPAddressField(
        null=True,
        blank=True,
        verbose_name=_("source IP"),
    )
    detail = models.JSONField(
        default=dict,
        blank=True,
        verbose_name=_("detail"),
    )

    class Meta:
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.action} {self.target}"


class ApiToken(models.Model):
    """A per-user API token. Only a SHA-256 of the secret is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        verbose_name=_("user"),
    )
    name = models.CharField(
        max_length=100,
        verbose_name=_("name"),
    )
    key_id = models.CharField(
        max_length=16,
        unique=True,
        help_text=_("Public part of the token, used to find it."),
        verbose_name=_("key ID"),
    )
    key_hash = models.CharField(
        max_length=64,
        verbose_name=_("key hash"),
    )
    created = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("created"),
    )
    expires = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("expires"),
    )
    last_used = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("last used"),
    )
    revoked = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("revoked"),
    )

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.user} / {self.name}"


class UserPreference(models.Model):
    """A user's own settings for the portal (one row per user, created on first change)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="portal_preference",
        verbose_name=_("user"),
    )
    skip_confirmations = models.JSONField(
        default=list,
        blank=True,
        help_text=_("Confirmations (tenants.choices.Confirmation) this user asked not to see."),
        verbose_name=_("skip confirmations"),
    )
    theme = models.CharField(
        max_length=8,
        choices=Theme.choices,
        default=Theme.AUTO,
        help_text=_("Colour theme; auto follows the browser's prefers-color-scheme."),
        verbose_name=_("theme"),
    )
    language = models.CharField(
        max_length=16,
        blank=True,
        default="",
        help_text=_("A code from settings.LANGUAGES; empty follows the browser's Accept-Language."),
        verbose_name=_("language"),
    )
    updated = models.DateTimeField(
        auto_now=True,
        verbose_name=_("updated"),
    )

    class Meta:
        verbose_name = _("user preference")
        verbose_name_plural = _("user preferences")

    def __str__(self) -> str:
        return f"Preferences of {self.user}"
