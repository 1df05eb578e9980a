"""Formats of a volume's stored messages: its events, status messages and the failures
recorded on it (``portal.texts``)."""

from django.utils.translation import gettext_noop

# --- Accepted (a new volume, a VM's root disk) ---------------------------------------------
ACCEPTED = gettext_noop("Accepted: %(size)s GiB %(disk_format)s %(storage_class)s volume.")
ACCEPTED_FROM_IMAGE = gettext_noop(
    "Accepted: %(size)s GiB %(disk_format)s %(storage_class)s volume from image %(image)s."
)
ACCEPTED_TO_ATTACH = gettext_noop(
    "Accepted: %(size)s GiB %(disk_format)s %(storage_class)s volume; it will be attached "
    "to %(vm)s as %(device)s."
)
ACCEPTED_FROM_IMAGE_TO_ATTACH = gettext_noop(
    "Accepted: %(size)s GiB %(disk_format)s %(storage_class)s volume from image %(image)s; "
    "it will be attached to %(vm)s as %(device)s."
)
ROOT_ACCEPTED = gettext_noop("Accepted: %(size)s GiB root disk of %(vm)s.")
ROOT_ACCEPTED_FROM_IMAGE = gettext_noop(
    "Accepted: %(size)s GiB root disk of %(vm)s from image %(image)s."
)
ROOT_DISK_OF = gettext_noop("Root disk of %(vm)s.")

# --- Created ------------------------------------------------------------------------------
CREATED_IN_VM_POOL = gettext_noop("Created in the pool of %(vm)s's host.")
CREATED = gettext_noop("Created: %(capacity)s GiB %(disk_format)s.")
CREATED_ON_IMAGE = gettext_noop("Created: %(capacity)s GiB %(disk_format)s on image %(image)s.")
STORAGE_GONE = gettext_noop("Its storage is gone from the host.")
NAMED_STORAGE_GONE = gettext_noop("%(volume)s: its storage is gone from the host.")
SOURCE_SNAPSHOT_GONE = gettext_noop("%(volume)s: its source snapshot %(source)s is gone.")
SOURCE_VOLUME_GONE = gettext_noop("%(volume)s: its source volume %(source)s is gone.")
NO_HOST = gettext_noop("The volume has no host.")
NO_ANSWER = gettext_noop("No answer after %(retries)s retries: %(error)s")

# --- Attach, detach -----------------------------------------------------------------------
ATTACHING = gettext_noop("Attaching to %(vm)s as %(device)s…")
ATTACH_REQUESTED = gettext_noop("Attach to %(vm)s as %(device)s requested by %(actor)s.")
ATTACHED = gettext_noop("Attached to %(vm)s as %(device)s.")
VM_VOLUME_ATTACHED = gettext_noop("Volume %(volume)s attached as %(device)s.")
ATTACH_FAILED = gettext_noop("Could not attach: %(message)s")
VM_ON_ANOTHER_HOST = gettext_noop("%(vm)s runs on another host.")
DETACHING = gettext_noop("Detaching from %(vm)s…")
DETACH_REQUESTED = gettext_noop("Detach from %(vm)s (%(device)s) requested by %(actor)s.")
DETACHED = gettext_noop("Detached from %(vm)s (%(device)s).")
DETACHED_FROM_ITS_VM = gettext_noop("Detached from its VM (%(device)s).")
VM_VOLUME_DETACHED = gettext_noop("Volume %(volume)s detached (%(device)s).")
DETACH_FAILED = gettext_noop("Could not detach: %(message)s")
DETACHED_VM_DELETED = gettext_noop("Detached: its VM %(vm)s was deleted.")
DETACHED_VM_DELETED_KEPT = gettext_noop(
    "Detached: its VM %(vm)s was deleted (kept: it has snapshots)."
)

# --- Resize -------------------------------------------------------------------------------
GROWING = gettext_noop("Growing to %(size)s GiB…")
GROW_REQUESTED = gettext_noop("Grow from %(old)s to %(size)s GiB requested by %(actor)s.")
GROWN = gettext_noop("Grown to %(capacity)s GiB.")
GROWN_ONLINE = gettext_noop("Grown to %(capacity)s GiB online: the guest sees the new size.")
GROW_FAILED = gettext_noop("Could not grow: %(message)s")
GROW_TO_FAILED = gettext_noop("Could not grow to %(size)s GiB: %(message)s")

# --- Delete -------------------------------------------------------------------------------
DELETE_REQUESTED = gettext_noop("Deletion requested by %(actor)s.")
DELETED = gettext_noop("Deleted.")
DELETED_QUOTA_RELEASED = gettext_noop("Deleted; its quota was released.")
DELETED_WITH_VM = gettext_noop("Deleted with its VM %(vm)s.")
DELETED_WITH_VM_QUOTA_RELEASED = gettext_noop("Deleted with its VM %(vm)s; its quota was released.")

# --- Kubernetes volume claims -------------------------------------------------------------
CLAIM_BOUND = gettext_noop("Claim %(claim)s bound (%(capacity)s GiB).")
CLAIM_IN_USE = gettext_noop("The claim is still in use by a pod.")
# ``claim_phase`` is the claim's own (Kubernetes) phase: it stays as Kubernetes says it.
CLAIM_NOT_BOUND = gettext_noop(
    "The claim is still %(claim_phase)s after %(seconds)s s: no volume of its StorageClass "
    "was bound to it."
)
CLAIM_MISSING = gettext_noop(
    "The claim is still missing after %(seconds)s s: no volume of its StorageClass was bound to it."
)
CLAIM_REFUSED = gettext_noop("%(message)s Its quota reservation was released.")
