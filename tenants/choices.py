"""Choices for tenants, memberships, quota and audit."""

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class Role(models.TextChoices):
    VIEWER = "viewer", _("Viewer")
    OPERATOR = "operator", _("Operator")
    # "Admin" alone is also the top bar's link to Django admin, another word in Chinese.
    ADMIN = "admin", pgettext_lazy("tenant role", "Admin")


class MembershipSource(models.TextChoices):
    """Who manages a membership: people (pages, API, admin) or the sign-in provider's
    groups (``GroupMapping``, re-evaluated at each single sign-on)."""

    LOCAL = "local", _("Local")
    OIDC = "oidc", _("Single sign-on group")


class ReservationKind(models.TextChoices):
    VM = "vm", _("Virtual machine")
    WORKLOAD = "workload", _("Workload")
    IMAGE = "image", _("Image")
    VOLUME = "volume", _("Volume")
    NETWORK = "network", _("Network")
    OTHER = "other", _("Other")


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", _("Success")
    DENIED = "denied", _("Denied")
    FAILED = "failed", _("Failed")


class Confirmation(models.TextChoices):
    """Destructive actions that ask first, and that a user may tell not to ask again
    (deleting always asks)."""

    VM_FORCE_STOP = "vm.force-stop", _("Force-stopping a VM")
    VM_REBOOT = "vm.reboot", _("Rebooting a VM")


class Theme(models.TextChoices):
    """The portal's colour theme for one user; ``auto`` follows the system setting."""

    AUTO = "auto", _("Follow the system")
    LIGHT = "light", _("Light")
    DARK = "dark", _("Dark")
