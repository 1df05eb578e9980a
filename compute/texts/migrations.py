"""Formats of a live migration's stored messages: its reason (why it waits, failed or
was cancelled), its notes and the VM events it writes (``portal.texts``)."""

from django.utils.translation import gettext_noop

# --- Request and queue --------------------------------------------------------------------
WAITING_FOR_SLOT = gettext_noop("Waiting for a free migration slot.")
REQUESTED = gettext_noop("Live migration requested by %(actor)s.")
QUEUED_CLUSTER = gettext_noop(
    "Queued: %(running)s migrations are running in the cluster (at most %(limit)s at once)."
)
QUEUED_HOST = gettext_noop(
    "Queued: %(leaving)s migrations are leaving this VM's host (at most %(limit)s at once)."
)

# --- The job ------------------------------------------------------------------------------
CANCELLED_BEFORE_START = gettext_noop("Cancelled before it started.")
VM_DELETED = gettext_noop("The VM was deleted.")
VM_MOVED = gettext_noop("The VM is no longer running where it was (phase %(phase)s).")
TARGET_NETWORK_CLASH = gettext_noop(
    "The target host runs another tenant's network whose range overlaps one of this VM's "
    "networks: the VM's network cannot start there."
)
NO_OTHER_HOST = gettext_noop("No other host can take the VM: %(reason)s")
STARTED = gettext_noop("Live migration started: the VM's memory is being copied to the target.")
FINISHED = gettext_noop("Live migration finished in %(seconds)s s; the guest kept running.")
PAUSED_NOTE = gettext_noop(
    "The guest is paused while its memory is copied: this host's QEMU cannot copy an "
    "emulated (TCG) guest's memory safely while it runs."
)
VOLUMES_NO_ROOM = gettext_noop(
    "The target host could not make room for the VM's volumes: %(error)s"
)
NETWORKS_NOT_MADE = gettext_noop("The target host could not make the VM's networks: %(error)s")
ABORTING = gettext_noop("Aborting — %(reason)s")
COMPLETION_TIMEOUT = gettext_noop(
    "Completion timeout: not finished after %(seconds)s s (%(per_gib)s s per GiB of the guest)."
)
PROGRESS_TIMEOUT = gettext_noop(
    "Progress timeout: the remaining data did not shrink for %(seconds)s s."
)
FAILED_UNEXPECTEDLY = gettext_noop("The live migration failed unexpectedly.")
WORKER_LOST = gettext_noop("The worker running this migration was lost; the job was abandoned.")

# --- Its end --------------------------------------------------------------------------------
VM_MESSAGE_FAILED = gettext_noop("Live migration failed: %(reason)s")
EVENT_CANCELLED = gettext_noop("Live migration cancelled: %(reason)s")
EVENT_FAILED = gettext_noop("Live migration failed; the VM keeps running where it was: %(reason)s")

# --- Cancel -------------------------------------------------------------------------------
CANCELLED_WHILE_QUEUED = gettext_noop("Cancelled by %(actor)s while queued.")
CANCELLING = gettext_noop("Cancelling (requested by %(actor)s)…")
CANCELLED_BY_REQUEST = gettext_noop("Cancelled (requested by %(actor)s).")
CANCELLED_ON_REQUEST = gettext_noop("Cancelled on request.")
