"""Choices for tenants, memberships, quota and audit."""

from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"


class ReservationKind(models.TextChoices):
    VM = "vm", "Virtual machine"
    WORKLOAD = "workload", "Workload"
    IMAGE = "image", "Image"
    OTHER = "other", "Other"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    DENIED = "denied", "Denied"
    FAILED = "failed", "Failed"
