"""Formats of the notification titles monitoring writes (``portal.texts``)."""

from django.utils.translation import gettext_noop

VM_FAILED = gettext_noop("VM failed: %(object)s")
WORKLOAD_FAILED = gettext_noop("Workload failed: %(object)s")
MIGRATION_FAILED = gettext_noop("Live migration failed: %(object)s")
SNAPSHOT_FAILED = gettext_noop("Scheduled snapshot failed: %(object)s")
