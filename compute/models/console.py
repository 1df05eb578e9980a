"""Console tickets: single-use, short-lived permissions to open one VM console.

Only a SHA-256 digest of the ticket is stored: a database dump or a log of queries
cannot be replayed into a console session.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ConsoleTicket(models.Model):
    """One ticket for one user, one VM and (for browsers) one session."""

    digest = models.CharField(
        max_length=64,
        unique=True,
        help_text=_("SHA-256 (hex) of the ticket; the ticket itself is never stored."),
        verbose_name=_("digest"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("user"),
    )
    vm = models.ForeignKey(
        "compute.VirtualMachine",
        on_delete=models.CASCADE,
        related_name="console_tickets",
        verbose_name=_("VM"),
    )
    session_key = models.CharField(
        max_length=40,
        blank=True,
        help_text=_("The browser session it was issued to; empty for API-token clients."),
        verbose_name=_("session key"),
    )
    view_only = models.BooleanField(
        default=True,
        verbose_name=_("view only"),
    )
    created = models.DateTimeField(
        auto_now_add=True,
        verbose_name=_("created"),
    )
    expires = models.DateTimeField(
        verbose_name=_("expires"),
    )
    used = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("used"),
    )

    class Meta:
        verbose_name = _("console ticket")
        verbose_name_plural = _("console tickets")
        indexes = [models.Index(fields=["expires"], name="compute_consoleticket_expires")]

    def __str__(self) -> str:
        return f"console ticket {self.pk} for {self.vm_id}"
