"""Formats of the messages snapshots store: the events on their volume's or VM's
timeline, a snapshot's and its volume's status messages, and what a snapshot schedule
records of its runs (``portal.texts``)."""

from django.utils.translation import gettext, gettext_noop, pgettext

from compute.choices import PHASE_LABELS

# What is done to disks (``what``) and the phases a volume must be in (``phases``, "Ready
# or Attached"), as the refusals below word them, in the reader's words; any other
# argument of that name is a message of its own.
DONE_TO_DISKS = ("snapshotted", "restored", "cloned")


def _localized(value: str) -> str:
    from portal.texts import localize

    return localize(value)


def _done(value: str) -> str:
    return pgettext("done to disks", value) if value in DONE_TO_DISKS else _localized(value)


def _phases(value: str) -> str:
    phases = value.split(" or ")
    if not all(p in PHASE_LABELS for p in phases):
        return _localized(value)
    return gettext(" or ").join(str(PHASE_LABELS[p]) for p in phases)


ARGUMENTS = {"what": _done, "phases": _phases}

# --- Refusals ---------------------------------------------------------------------------
# Raised to the user in their language (``gettext(FORMAT) % ...``); a scheduled run stores
# them in English as the reason it failed.
VOLUME_NOT_QUIET = gettext_noop("%(volume)s is %(phase)s: it can be %(what)s when %(phases)s.")
VOLUME_VM_NOT_STOPPED = gettext_noop(
    "%(volume)s is a disk of %(vm)s, which is %(phase)s: stop the VM first so that its disk "
    "is %(what)s in a consistent state."
)
VM_NOT_STOPPED = gettext_noop(
    "%(vm)s is %(phase)s: stop it first so that its disks are %(what)s in a consistent state."
)
VM_NO_DISKS = gettext_noop("%(vm)s has no disks to snapshot.")
VM_NOT_SNAPSHOTTABLE = gettext_noop(
    "%(vm)s is %(phase)s: a snapshot is taken while it is Running, Paused or Stopped."
)
MEMORY_NEEDS_RUNNING = gettext_noop(
    "%(vm)s is %(phase)s: only a running or paused VM has a memory state to save."
)
MEMORY_UNSUPPORTED = gettext_noop(
    "The host of %(vm)s cannot save a running VM's memory: take the snapshot without memory."
)
VM_DISKS_BUSY = gettext_noop("%(disks)s of %(vm)s cannot be %(what)s now (busy).")
NAME_TAKEN = gettext_noop("%(volume)s has a snapshot named %(name)s already.")
SNAPSHOT_EXISTS = gettext_noop("A snapshot with this name exists already.")

# --- Requested (events, by whom) ------------------------------------------------------
TAKE_REQUESTED = gettext_noop(
    "Snapshot %(snapshot)s (%(size_gib)s GiB copy) requested by %(actor)s."
)
TAKE_WITH_VM_REQUESTED = gettext_noop(
    "Snapshot %(snapshot)s (%(size_gib)s GiB copy with %(vm)s's other disks) requested by "
    "%(actor)s."
)
TAKE_LIVE_REQUESTED = gettext_noop(
    "Snapshot %(snapshot)s (%(size_gib)s GiB copy with %(vm)s's other disks, taken while it "
    "runs) requested by %(actor)s."
)
TAKE_MEMORY_REQUESTED = gettext_noop(
    "Snapshot %(snapshot)s (%(size_gib)s GiB copy with %(vm)s's other disks and its "
    "%(memory_gib)s GiB memory state) requested by %(actor)s."
)
RESTORE_REQUESTED = gettext_noop(
    "Restore of snapshot %(snapshot)s (its current data is replaced) requested by %(actor)s."
)
DELETE_REQUESTED = gettext_noop("Deletion of snapshot %(snapshot)s requested by %(actor)s.")

# --- The task's outcome ---------------------------------------------------------------
RESTORING = gettext_noop("Restoring snapshot %(snapshot)s…")
DELETED = gettext_noop("Snapshot %(snapshot)s deleted; its quota was released.")
IS_NOW = gettext_noop("Snapshot %(snapshot)s is %(phase)s.")
TAKEN = gettext_noop("Snapshot %(snapshot)s taken: a %(size_gib)s GiB copy of %(volume)s.")
TAKEN_LIVE = gettext_noop(
    "Snapshot %(snapshot)s taken while %(vm)s ran: a %(size_gib)s GiB copy of %(volume)s, "
    "crash-consistent (copied in %(seconds)s s; no guest agent froze its filesystems)."
)
TAKEN_LIVE_QUIESCED = gettext_noop(
    "Snapshot %(snapshot)s taken while %(vm)s ran: a %(size_gib)s GiB copy of %(volume)s, "
    "quiesced (the guest agent froze its filesystems; copied in %(seconds)s s)."
)
TAKEN_LIVE_MEMORY = gettext_noop(
    "Snapshot %(snapshot)s taken while %(vm)s ran: a %(size_gib)s GiB copy of %(volume)s and "
    "the VM's memory state (the guest was paused for %(seconds)s s)."
)
LIVE_NOT_RUNNING = gettext_noop(
    "Not taken: %(vm)s was %(state)s, not running, when the snapshot's turn came. Take it again."
)
RESUME_SET = gettext_noop(
    "Restored from snapshot %(snapshot)s: the next start resumes %(vm)s where the snapshot "
    "was taken, from its memory state."
)
RESUMED = gettext_noop("Resumed from the memory state of snapshot %(snapshot)s instead of booting.")
RESUME_FAILED = gettext_noop(
    "Could not resume from the memory state of snapshot %(snapshot)s (%(error)s): booting "
    "from the restored disks instead."
)
RESTORED_FROM = gettext_noop("Restored from snapshot %(snapshot)s.")
RESTORED_ONTO = gettext_noop("Restored onto %(volume)s.")
NOT_RESTORED = gettext_noop("Not restored: %(volume)s is %(phase)s.")
RESTORE_FAILED = gettext_noop(
    "Restore from %(snapshot)s failed: %(error)s Its data may be incomplete: restore "
    "%(snapshot)s again."
)
RESTORE_ONTO_FAILED = gettext_noop("Restore onto %(volume)s failed: %(error)s")
COPY_GONE = gettext_noop("its copy is gone from the host (%(file)s).")
# The volume's side of a restore refused because the snapshot's copy is gone (the reason
# is part of the format: a reason followed by the volume's name could not be read back).
RESTORE_REFUSED = gettext_noop(
    "Restore from %(snapshot)s failed: its copy is gone from the host (%(file)s). "
    "%(volume)s was not changed."
)
CANNOT_BE_RESTORED = gettext_noop("Cannot be restored: %(error)s")
# A backend that kept failing with a transient error (snapshots and backups).
NO_ANSWER = gettext_noop("No answer after %(retries)s retries: %(error)s")

# --- Clone of a volume (events on the source and on the clone) -----------------------
VOLUME_CLONE_REQUESTED = gettext_noop(
    "Clone %(clone)s requested: a full copy of %(source)s (%(size_gib)s GiB) by %(actor)s."
)
VOLUME_CLONE_ACCEPTED = gettext_noop(
    "Accepted: a full copy of %(source)s (%(size_gib)s GiB) by %(actor)s."
)

# --- Schedules ------------------------------------------------------------------------
SCHEDULE_SET_EVERY = gettext_noop(
    "Snapshots scheduled every %(hours)s h, keeping %(keep)s by %(actor)s; next at "
    "%(next_run)s UTC."
)
SCHEDULE_SET_EVERY_PAUSED = gettext_noop(
    "Snapshots scheduled every %(hours)s h, keeping %(keep)s (paused) by %(actor)s; next at "
    "%(next_run)s UTC."
)
SCHEDULE_SET_DAILY = gettext_noop(
    "Snapshots scheduled daily at %(time)s UTC, keeping %(keep)s by %(actor)s; next at "
    "%(next_run)s UTC."
)
SCHEDULE_SET_DAILY_PAUSED = gettext_noop(
    "Snapshots scheduled daily at %(time)s UTC, keeping %(keep)s (paused) by %(actor)s; "
    "next at %(next_run)s UTC."
)
SCHEDULE_REMOVED = gettext_noop(
    "Snapshot schedule removed by %(actor)s; the snapshots it took are kept."
)
SCHEDULE_TOOK = gettext_noop("Took %(snapshot)s.")
SCHEDULE_FAILED = gettext_noop(
    "Scheduled snapshot %(snapshot)s of %(subject)s failed: %(error)s Next try at %(next_run)s UTC."
)
