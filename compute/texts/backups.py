"""Formats of the messages backups store: the events on a backup's and on a restored
VM's timeline, a backup's status message, and why an export or a restore failed
(``portal.texts``)."""

from django.utils.translation import gettext_noop

# --- Export ---------------------------------------------------------------------------
REQUESTED = gettext_noop(
    "Backup %(backup)s of snapshot %(snapshot)s of %(vm)s requested by %(actor)s."
)
VOLUME_REQUESTED = gettext_noop(
    "Backup %(backup)s of snapshot %(snapshot)s of volume %(volume)s requested by %(actor)s."
)
EXPORTING = gettext_noop("Exporting %(disks)s disk(s) to the backup directory.")
READY = gettext_noop("Backup %(backup)s is Ready: %(files)s file(s), %(bytes)s bytes.")
EXPORT_FAILED = gettext_noop("Export failed: %(error)s")
SNAPSHOT_GONE = gettext_noop("The snapshot of %(volume)s is gone; nothing to export.")
NOT_THE_FORMAT = gettext_noop("The file is %(found)s, not %(format)s.")

# --- Delete ---------------------------------------------------------------------------
DELETE_REQUESTED = gettext_noop("Deletion requested by %(actor)s.")
DELETED = gettext_noop("Backup %(backup)s deleted; its files were removed.")

# --- Restore into a new VM ------------------------------------------------------------
RESTORE_ACCEPTED = gettext_noop(
    "Accepted: restored from backup %(backup)s (of %(vm)s) by %(actor)s."
)
RESTORE_REQUESTED = gettext_noop("Restore into the new VM %(vm)s requested.")
RESTORE_QUOTA_EXCEEDED = gettext_noop("Restore into %(vm)s: %(error)s")
# --- Restore one disk into a new volume -----------------------------------------------
DISK_RESTORE_ACCEPTED = gettext_noop(
    "Accepted: disk %(disk)s of backup %(backup)s (of %(vm)s) restored into this volume "
    "by %(actor)s."
)
DISK_RESTORE_REQUESTED = gettext_noop(
    "Restore of disk %(disk)s into the new volume %(volume)s requested."
)
DISK_RESTORE_QUOTA_EXCEEDED = gettext_noop("Restore of %(disk)s into %(volume)s: %(error)s")
# What is wrong with a backup's files (the restore checks each before writing any).
FILE_MISSING = gettext_noop("%(file)s is missing from the backup directory.")
FILE_CORRUPT = gettext_noop("%(file)s is corrupt (its sha256 does not match).")
BACKUP_DELETED = gettext_noop("The backup it is restored from was deleted.")
# The restore failed (``problems``: what is wrong, one sentence per file).
RESTORE_INTO_FAILED = gettext_noop(
    "Restore into %(vm)s failed: %(problems)s The new VM was removed and its quota released."
)
RESTORE_FROM_FAILED = gettext_noop("Restore from backup %(backups)s failed: %(problems)s")
RESTORE_FROM_DELETED_FAILED = gettext_noop("Restore from backup (deleted) failed: %(problems)s")
RESTORE_FROM_FAILED_REMOVED = gettext_noop(
    "Restore from backup %(backups)s failed: %(problems)s The VM is removed and its quota released."
)
RESTORE_FROM_DELETED_FAILED_REMOVED = gettext_noop(
    "Restore from backup (deleted) failed: %(problems)s The VM is removed and its quota released."
)
# A restored volume's data cannot be written (the provisioning task's failure).
VOLUME_STORAGE_GONE = gettext_noop("%(volume)s: its storage is gone from the host.")
VOLUME_BACKUP_GONE = gettext_noop("%(volume)s: the backup it is restored from is gone.")
VOLUME_NO_DISK = gettext_noop("%(volume)s: backup %(backup)s has no disk %(device)s.")
VOLUME_FILE_MISSING = gettext_noop("%(volume)s: %(file)s is missing from backup %(backup)s.")
VOLUME_FILE_CORRUPT = gettext_noop("%(volume)s: %(file)s of backup %(backup)s is corrupt.")
