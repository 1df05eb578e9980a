"""Choices for usage accounting and quota requests."""

from django.db import models


class QuotaRequestState(models.TextChoices):
    PENDING = "Pending", "Pending"
    APPROVED = "Approved", "Approved"
    PARTIALLY_APPROVED = "PartiallyApproved", "Partially approved"
    REJECTED = "Rejected", "Rejected"


class Metric(models.TextChoices):
    """The metered quantities, each in unit-hours. ``*_used`` come from VM metrics."""

    VCPU_HOURS = "vcpu_hours", "vCPU-hours"
    MEMORY_GIB_HOURS = "memory_gib_hours", "Memory GiB-hours"
    STORAGE_GIB_HOURS = "storage_gib_hours", "Storage GiB-hours"
    VM_HOURS = "vm_hours", "VM-hours"
    POD_HOURS = "pod_hours", "Pod-hours"
    VCPU_USED_HOURS = "vcpu_used_hours", "vCPU-hours used"
    MEMORY_USED_GIB_HOURS = "memory_used_gib_hours", "Memory GiB-hours used"
