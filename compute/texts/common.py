"""Formats shared by every kind of compute object (``portal.texts``)."""

from django.utils.translation import gettext_noop

PHASE_IS_NOW = gettext_noop("Phase is now %(phase)s.")
