"""Choices for tenants, memberships, quota and audit."""

from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"


class MembershipSource(models.TextChoices):
    """Who manages a membership: people (pages, API, admin) or the sign-in provider's
    groups (``GroupMapping``, re-evaluated at each single sign-on)."""

    LOCAL = "local", "Local"
    OIDC = "oidc", "Single sign-on group"


class ReservationKind(models.TextChoices):
    VM = "vm", "Virtual machine"
    WORKLOAD = "workload", "Workload"
    IMAGE = "image", "Image"
    VOLUME = "volume", "Volume"
    NETWORK = "network", "Network"
    OTHER = "other", "Other"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    DENIED = "denied", "Denied"
    FAILED = "failed", "Failed"


class Confirmation(models.TextChoices):
    """Destructive actions that ask first, and that a user may tell not to ask again
    (deleting always asks)."""

    VM_FORCE_STOP = "vm.force-stop", "Force-stopping a VM"
    VM_REBOOT = "vm.reboot", "Rebooting a VM"


class Theme(models.TextChoices):
    """The portal's colour theme for one user; ``auto`` follows the system setting."""

    AUTO = "auto", "Follow the system"
    LIGHT = "light", "Light"
    DARK = "dark", "Dark"
