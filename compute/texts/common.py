"""Formats shared by every kind of compute object (``portal.texts``)."""

from django.utils.translation import gettext_noop

PHASE_IS_NOW = gettext_noop("Phase is now %(phase)s.")

# A VM's or workload's labels changed by a user (compute.labels.labels_text).
LABELS_CHANGED = gettext_noop("Labels changed to %(labels)s by %(actor)s.")
LABELS_REMOVED = gettext_noop("Labels removed by %(actor)s.")
