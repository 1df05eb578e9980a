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

from compute.choices import PoolPhase, RestartPolicy
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
    )
    name = models.CharField(
        max_length=MAX_POOL_NAME,
        validators=[DNS_LABEL],
    )
    image = models.ForeignKey(
        "compute.Image",
        on_delete=models.PROTECT,
        related_name="pools",
    )
    vcpus = models.PositiveSmallIntegerField()
    memory_mib = models.PositiveIntegerField()
    disk_gib = models.PositiveIntegerField(
        default=0,
    )
    labels = models.JSONField(
        default=dict,
        blank=True,
        help_text="Labels of the pool and of every member (beside isotope.dev/pool).",
    )
    restart_policy = models.CharField(
        max_length=10,
        choices=RestartPolicy.choices,
        default=RestartPolicy.ON_FAILURE,
    )
    replicas = models.PositiveIntegerField(
        default=1,
        validators=[MaxValueValidator(MAX_REPLICAS)],
    )
    deleting = models.BooleanField(
        default=False,
    )
    generation = models.PositiveBigIntegerField(
        default=1,
        editable=False,
        help_text="Grows whenever the spec changes (scale, delete).",
    )
    observed_generation = models.PositiveBigIntegerField(
        default=0,
        editable=False,
        help_text="The generation the controller last converged towards.",
    )
    next_index = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="The n of the next member's name <pool>-<n>.",
    )
    phase = models.CharField(
        max_length=12,
        choices=PoolPhase.choices,
        default=PoolPhase.PENDING,
        db_index=True,
    )
    message = models.CharField(
        max_length=1000,
        blank=True,
    )
    phase_changed = models.DateTimeField(
        auto_now_add=True,
    )
    current_replicas = models.PositiveIntegerField(
        default=0,
        help_text="Members that exist and are not being deleted.",
    )
    available_replicas = models.PositiveIntegerField(
        default=0,
        help_text="Members whose domain is Running.",
    )
    ready_replicas = models.PositiveIntegerField(
        default=0,
        help_text="Members Running with their guest Ready.",
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
                violation_error_message="A VM pool with this name exists in the tenant.",
            ),
            models.CheckConstraint(
                condition=Q(vcpus__gte=1) & Q(memory_mib__gte=64),
                name="%(app_label)s_%(class)s_minimum_size",
                violation_error_message="A member needs at least 1 vCPU and 64 MiB.",
            ),
            models.CheckConstraint(
                condition=Q(replicas__lte=MAX_REPLICAS),
                name="%(app_label)s_%(class)s_replicas_at_most_max",
                violation_error_message=f"A pool has at most {MAX_REPLICAS} replicas.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"

    def member_name(self, index: int) -> str:
        return f"{self.name}-{index}"
