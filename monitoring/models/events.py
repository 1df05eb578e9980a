"""Kubernetes-style events: what happened to which object of which tenant, folded."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from monitoring.choices import EventType


class Event(models.Model):
    """One kind of occurrence on one object, with how often and when it happened.

    Repeats of the same (tenant, kind, name, type, reason, message) within the fold
    window are folded into one row by ``monitoring.services.event_publish``: ``count``
    grows and ``last_seen`` moves, as ``kubectl get events`` shows them.
    """

    uid = models.UUIDField(
        verbose_name=_("UID"),
        default=uuid.uuid4,
        editable=False,
        unique=True,
    )
    tenant = models.ForeignKey(
        "tenants.Tenant",
        verbose_name=_("tenant"),
        on_delete=models.CASCADE,
        related_name="events",
        db_index=False,
    )
    type = models.CharField(
        verbose_name=_("type"),
        max_length=16,
        choices=EventType.choices,
        default=EventType.NORMAL,
    )
    reason = models.CharField(
        verbose_name=_("reason"),
        max_length=64,
        help_text=_("Short CamelCase cause, e.g. Started, FailedScheduling, QuotaExceeded."),
    )
    message = models.TextField(
        verbose_name=_("message"),
        blank=True,
    )
    kind = models.CharField(
        verbose_name=_("kind"),
        max_length=32,
        help_text=_("Kind of the involved object, e.g. vm, workload, migration, tenant."),
    )
    name = models.CharField(
        verbose_name=_("name"),
        max_length=253,
        help_text=_("Name of the involved object within the tenant."),
    )
    object_uid = models.CharField(
        verbose_name=_("object UID"),
        max_length=64,
        blank=True,
        help_text=_("The involved object's uid, when it has one."),
    )
    source = models.CharField(
        verbose_name=_("source"),
        max_length=64,
        default="isotope",
        help_text=_("The component that reported it (reconciler, scheduler, api, ...)."),
    )
    count = models.PositiveIntegerField(
        verbose_name=_("count"),
        default=1,
    )
    first_seen = models.DateTimeField(
        verbose_name=_("first seen"),
    )
    last_seen = models.DateTimeField(
        verbose_name=pgettext_lazy("event", "last seen"),
    )

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["-last_seen", "-id"]
        indexes = [
            models.Index(
                fields=["tenant", "-last_seen"],
                name="monitoring_event_tenant_seen",
            ),
            models.Index(
                fields=["tenant", "kind", "name", "-last_seen"],
                name="monitoring_event_tenant_obj",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(count__gte=1),
                name="%(app_label)s_%(class)s_count_positive",
                violation_error_message="An event happened at least once.",
            ),
            models.CheckConstraint(
                condition=Q(last_seen__gte=models.F("first_seen")),
                name="%(app_label)s_%(class)s_seen_in_order",
                violation_error_message="An event is last seen after it is first seen.",
            ),
            models.CheckConstraint(
                condition=Q(type__in=EventType.values),
                name="%(app_label)s_%(class)s_type_valid",
                violation_error_message="An event is Normal or Warning.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.reason} {self.kind}/{self.name} ×{self.count}"
