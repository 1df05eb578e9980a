"""Formats of a VM's stored messages: its events and status messages (``portal.texts``)."""

from django.utils.translation import gettext_noop

ACCEPTED = gettext_noop("Accepted: %(vcpus)s vCPU, %(memory_mib)s MiB, image %(image)s.")
