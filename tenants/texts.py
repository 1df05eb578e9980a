"""Formats of stored messages about tenants, quota and who asked (``portal.texts``)."""

from django.utils.translation import gettext_noop

# Who asked, when no user did: inside "… requested by %(actor)s." and the like.
THE_SYSTEM = gettext_noop("the system")
QUOTA_EXCEEDED = gettext_noop("Quota exceeded for %(resources)s.")
