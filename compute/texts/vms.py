"""Formats of a VM's stored messages: its events and status messages (``portal.texts``)."""

from django.utils.translation import gettext_noop

ACCEPTED = gettext_noop("Accepted: %(vcpus)s vCPU, %(memory_mib)s MiB, image %(image)s.")

# --- A user's action on a VM (one format per action: the verb is part of the sentence) ---
STARTING_REQUESTED = gettext_noop("Starting requested by %(actor)s.")
STOPPING_REQUESTED = gettext_noop("Stopping requested by %(actor)s.")
FORCE_STOPPING_REQUESTED = gettext_noop("ForceStopping requested by %(actor)s.")
PAUSING_REQUESTED = gettext_noop("Pausing requested by %(actor)s.")
RESUMING_REQUESTED = gettext_noop("Resuming requested by %(actor)s.")
REBOOTING_REQUESTED = gettext_noop("Rebooting requested by %(actor)s.")
DELETING_REQUESTED = gettext_noop("Deleting requested by %(actor)s.")
# An action's event verb (compute.services.vms.ACTIONS) → its format.
REQUESTED_BY = {
    "Starting": STARTING_REQUESTED,
    "Stopping": STOPPING_REQUESTED,
    "ForceStopping": FORCE_STOPPING_REQUESTED,
    "Pausing": PAUSING_REQUESTED,
    "Resuming": RESUMING_REQUESTED,
    "Rebooting": REBOOTING_REQUESTED,
    "Deleting": DELETING_REQUESTED,
}
RESIZED = gettext_noop("Resized to %(vcpus)s vCPU, %(memory_mib)s MiB.")
DELETED = gettext_noop("Deleted.")
DELETED_QUOTA_RELEASED = gettext_noop("Deleted; its quota was released.")

# --- What the tasks record -------------------------------------------------------------
NO_HOST = gettext_noop("The VM has no host.")
GAVE_UP = gettext_noop("%(reason)s (gave up after %(attempts)s attempts).")
STOP_TO_RESIZE = gettext_noop("The VM must be stopped to apply a new size.")
FORCED_OFF = gettext_noop("The guest ignored the shutdown request; forced off.")

# --- The reconciler: what happened to a domain outside the portal ----------------------
HOST_UNREACHABLE = gettext_noop("Host %(host)s is unreachable; last known phase %(phase)s.")
DOMAIN_VANISHED = gettext_noop("The domain disappeared outside the portal.")
DOMAIN_VANISHED_RECREATING = gettext_noop(
    "The domain disappeared outside the portal; restart policy %(policy)s: recreating it."
)
STOPPED_OUTSIDE = gettext_noop("The guest stopped outside the portal (%(why)s).")
STOPPED_OUTSIDE_RESTARTING = gettext_noop(
    "The guest stopped outside the portal (%(why)s); restart policy %(policy)s: starting it again."
)
STOPPED_OUTSIDE_LEFT_STOPPED = gettext_noop(
    "The guest stopped outside the portal (%(why)s); restart policy %(policy)s: leaving it stopped."
)
STARTED_OUTSIDE = gettext_noop("The domain was started outside the portal; the portal follows it.")
STARTED_PAUSED_OUTSIDE = gettext_noop(
    "The domain was started (paused) outside the portal; the portal follows it."
)
PAUSED_OUTSIDE = gettext_noop("The domain was paused outside the portal.")
RESUMED_OUTSIDE = gettext_noop("The domain was resumed outside the portal.")

# --- The Ready condition's message ------------------------------------------------------
GUEST_BOOTING = gettext_noop("The domain runs; waiting for the guest to report that it is up.")
HOST_NOT_ANSWERING = gettext_noop("The VM's host does not answer.")
GUEST_STARTING = gettext_noop("The guest is starting.")
GUEST_RESTARTING = gettext_noop("The guest is restarting.")
READY_AFTER_RUNNING = gettext_noop("%(message)s Ready %(seconds)s s after Running.")
# Not Ready because of its phase: one sentence per phase (a bare "The VM is %(phase)s."
# would read back out of unrelated messages that start and end alike).
VM_IS_PENDING = gettext_noop("The VM is Pending.")
VM_IS_PROVISIONING = gettext_noop("The VM is Provisioning.")
VM_IS_STARTING = gettext_noop("The VM is Starting.")
VM_IS_RUNNING = gettext_noop("The VM is Running.")
VM_IS_PAUSED = gettext_noop("The VM is Paused.")
VM_IS_STOPPING = gettext_noop("The VM is Stopping.")
VM_IS_STOPPED = gettext_noop("The VM is Stopped.")
VM_IS_MIGRATING = gettext_noop("The VM is Migrating.")
VM_IS_DELETING = gettext_noop("The VM is Deleting.")
VM_IS_FAILED = gettext_noop("The VM is Failed.")
VM_IS_UNKNOWN = gettext_noop("The VM is Unknown.")
VM_IS = {
    "Pending": VM_IS_PENDING,
    "Provisioning": VM_IS_PROVISIONING,
    "Starting": VM_IS_STARTING,
    "Running": VM_IS_RUNNING,
    "Paused": VM_IS_PAUSED,
    "Stopping": VM_IS_STOPPING,
    "Stopped": VM_IS_STOPPED,
    "Migrating": VM_IS_MIGRATING,
    "Deleting": VM_IS_DELETING,
    "Failed": VM_IS_FAILED,
    "Unknown": VM_IS_UNKNOWN,
}
# What a readiness probe saw (compute.backends.*.guest_ready).
NO_PROBE = gettext_noop("Nothing to probe inside this guest: Ready follows Running.")
NO_PROBE_TEST_DRIVER = gettext_noop("libvirt's test driver runs no guest: Ready follows Running.")
AGENT_ANSWERS = gettext_noop("The QEMU guest agent answers.")
AGENT_WAITING = gettext_noop("Waiting for the QEMU guest agent to answer.")
BANNER_PRINTED = gettext_noop("The guest printed %(banner)s on its serial console.")
BANNER_WAITING = gettext_noop("Waiting for the guest to print %(banner)s on its serial console.")
