"""Virtual machines: desired spec and observed status."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from compute.choices import ConditionStatus, DesiredState, Phase, RestartPolicy
from portal.models import Resource
from tenants.models import DNS_LABEL


class VirtualMachine(Resource):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="vms",
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
    )
    vcpus = models.PositiveSmallIntegerField()
    memory_mib = models.PositiveIntegerField()
    disk_gib = models.PositiveIntegerField(
        default=0,
    )
    image = models.ForeignKey(
        "compute.Image",
        on_delete=models.PROTECT,
        related_name="vms",
    )
    host = models.ForeignKey(
        "compute.Host",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="vms",
    )
    desired_state = models.CharField(
        max_length=8,
        choices=DesiredState.choices,
        default=DesiredState.RUNNING,
    )
    generation = models.PositiveBigIntegerField(
        default=1,
        editable=False,
        help_text="Grows whenever what the VM should be (desired state, size) changes; "
        "an observation made against an older generation does not set the phase.",
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
    detail = models.TextField(
        blank=True,
        editable=False,
        help_text="Platform staff only: the hypervisor's own words behind the message.",
    )
    phase_changed = models.DateTimeField(
        auto_now_add=True,
    )
    ready = models.CharField(
        max_length=7,
        choices=ConditionStatus.choices,
        default=ConditionStatus.FALSE,
        help_text="The Ready condition: the guest is up (not only its domain running).",
    )
    ready_reason = models.CharField(
        max_length=64,
        blank=True,
    )
    ready_message = models.CharField(
        max_length=300,
        blank=True,
    )
    ready_changed = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the Ready condition's status last changed.",
    )
    boot_log_offset = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="Where this boot's output starts in the serial console log: a ready "
        "banner counts only after it.",
    )
    restart_policy = models.CharField(
        max_length=10,
        choices=RestartPolicy.choices,
        default=RestartPolicy.ON_FAILURE,
    )
    labels = models.JSONField(
        default=dict,
        blank=True,
    )
    node_selector = models.JSONField(
        default=dict,
        blank=True,
        help_text="Host labels the VM requires.",
    )
    backend_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="libvirt UUID of the domain.",
    )
    legacy_domain_name = models.CharField(
        max_length=130,
        blank=True,
        editable=False,
        help_text="Domain name of a VM created before domains were named by uid.",
    )
    vnc_port = models.IntegerField(
        null=True,
        blank=True,
    )
    pool = models.ForeignKey(
        "compute.VMPool",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="members",
        help_text="The VM pool this VM is a member of (the pool created it).",
    )
    pool_template = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text="The pool's template generation this member was made from.",
    )
    pool_warm = models.BooleanField(
        default=False,
        help_text="A pool's warm member: defined and stopped, started on a scale-up.",
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
                violation_error_message="A VM with this name exists in the tenant.",
            ),
            models.CheckConstraint(
                condition=Q(vcpus__gte=1) & Q(memory_mib__gte=64),
                name="%(app_label)s_%(class)s_minimum_size",
                violation_error_message="A VM needs at least 1 vCPU and 64 MiB.",
            ),
        ]
        indexes = [
            models.Index(fields=["host", "phase"]),
            # The overview's "most recent VMs" reads the top of this, not every VM.
            models.Index(fields=["tenant", "-created", "-id"], name="compute_vm_tenant_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"

    @property
    def domain_name(self) -> str:
        """The libvirt domain name, ``isotope-<uid>``: two VMs (of any tenants, or a VM
        deleted and created again under its old name) never share a domain. The domain's
        metadata and title name the tenant and the VM for operators."""
        return self.legacy_domain_name or f"isotope-{self.uid}"

    @property
    def quota_ref(self) -> str:
        return f"vm:{self.uid}"
