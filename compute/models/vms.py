"""Virtual machines: desired spec and observed status."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from compute.choices import ConditionStatus, DesiredState, Phase, RestartPolicy
from portal.models import Resource
from tenants.models import DNS_LABEL


class VirtualMachine(Resource):
    tenant = models.ForeignKey(
        "tenants.Tenant",
        on_delete=models.PROTECT,
        related_name="vms",
        verbose_name=_("tenant"),
        db_index=False,
    )
    name = models.CharField(
        max_length=63,
        validators=[DNS_LABEL],
        verbose_name=_("name"),
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
    image = models.ForeignKey(
        "compute.Image",
        on_delete=models.PROTECT,
        related_name="vms",
        verbose_name=_("image"),
    )
    host = models.ForeignKey(
        "compute.Host",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="vms",
        verbose_name=_("host"),
        db_index=False,
    )
    desired_state = models.CharField(
        max_length=8,
        choices=DesiredState.choices,
        default=DesiredState.RUNNING,
        verbose_name=_("desired state"),
    )
    generation = models.PositiveBigIntegerField(
        default=1,
        editable=False,
        help_text=_(
            "Grows whenever what the VM should be (desired state, size) changes; "
            "an observation made against an older generation does not set the phase."
        ),
        verbose_name=_("generation"),
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
    detail = models.TextField(
        blank=True,
        editable=False,
        help_text=_("Platform staff only: the hypervisor's own words behind the message."),
        verbose_name=_("detail"),
    )
    phase_changed = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("phase changed"),
    )
    resume_from = models.ForeignKey(
        "compute.Snapshot",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=_(
            "A snapshot with memory state restored onto this VM: its next start resumes "
            "the guest where the snapshot was taken instead of booting it."
        ),
        verbose_name=_("resume from"),
    )
    ready = models.CharField(
        max_length=7,
        choices=ConditionStatus.choices,
        default=ConditionStatus.FALSE,
        help_text=_("The Ready condition: the guest is up (not only its domain running)."),
        verbose_name=_("ready"),
    )
    ready_reason = models.CharField(
        max_length=64,
        blank=True,
        verbose_name=_("ready reason"),
    )
    ready_message = models.CharField(
        max_length=300,
        blank=True,
        verbose_name=_("ready message"),
    )
    ready_changed = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the Ready condition's status last changed."),
        verbose_name=_("ready changed"),
    )
    boot_log_offset = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text=_(
            "Where this boot's output starts in the serial console log: a ready "
            "banner counts only after it."
        ),
        verbose_name=_("boot log offset"),
    )
    restart_policy = models.CharField(
        max_length=10,
        choices=RestartPolicy.choices,
        default=RestartPolicy.ON_FAILURE,
        verbose_name=_("restart policy"),
    )
    labels = models.JSONField(
        default=dict,
        blank=True,
        verbose_name=_("labels"),
    )
    node_selector = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Host labels the VM requires."),
        verbose_name=_("node selector"),
    )
    backend_id = models.CharField(
        max_length=64,
        blank=True,
        help_text=_("libvirt UUID of the domain."),
        verbose_name=_("backend ID"),
    )
    legacy_domain_name = models.CharField(
        max_length=130,
        blank=True,
        editable=False,
        help_text=_("Domain name of a VM created before domains were named by uid."),
        verbose_name=_("legacy domain name"),
    )
    vnc_port = models.IntegerField(
        null=True,
        blank=True,
        verbose_name=_("VNC port"),
    )
    pool = models.ForeignKey(
        "compute.VMPool",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="members",
        help_text=_("The VM pool this VM is a member of (the pool created it)."),
        verbose_name=_("pool"),
    )
    pool_template = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text=_("The pool's template generation this member was made from."),
    )
    pool_warm = models.BooleanField(
        default=False,
        help_text=_("A pool's warm member: defined and stopped, started on a scale-up."),
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
        verbose_name = _("virtual machine")
        verbose_name_plural = _("virtual machines")
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
            # Declared here, not as the field's db_index: that would add a second,
            # pattern-matching index (a phase is never matched with LIKE) which every
            # insert and phase change would write too. The same for each kind's phase.
            models.Index(fields=["phase"], name="compute_virtualmachine_phase"),
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
