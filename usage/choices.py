"""Choices for usage accounting and quota requests."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class QuotaRequestState(models.TextChoices):
    PENDING = "Pending", _("Pending")
    APPROVED = "Approved", _("Approved")
    PARTIALLY_APPROVED = "PartiallyApproved", _("Partially approved")
    REJECTED = "Rejected", _("Rejected")


class Metric(models.TextChoices):
    """The metered quantities, each in unit-hours. ``*_used`` come from VM metrics."""

    VCPU_HOURS = "vcpu_hours", _("vCPU-hours")
    MEMORY_GIB_HOURS = "memory_gib_hours", _("Memory GiB-hours")
    STORAGE_GIB_HOURS = "storage_gib_hours", _("Storage GiB-hours")
    VM_HOURS = "vm_hours", _("VM-hours")
    POD_HOURS = "pod_hours", _("Pod-hours")
    VCPU_USED_HOURS = "vcpu_used_hours", _("vCPU-hours used")
    MEMORY_USED_GIB_HOURS = "memory_used_gib_hours", _("Memory GiB-hours used")
