"""Formats of an imported image's stored messages: its events, status messages and the
reason an import failed (``portal.texts``). Sizes in bytes are passed formatted with
thousands separators (``f"{size:,}"``)."""

from django.utils.translation import gettext_noop

# --- Accepting an import ------------------------------------------------------------------
WAITING_FOR_UPLOAD = gettext_noop("Waiting for the upload.")
WAITING_FOR_WORKER = gettext_noop("Waiting for a worker.")
UPLOAD_ACCEPTED = gettext_noop(
    "Upload of %(size)s bytes accepted; %(storage)s GiB of storage reserved."
)
IMPORT_ACCEPTED = gettext_noop(
    "Import from %(host)s accepted; %(storage)s GiB of storage reserved until its size is known."
)

# --- The upload ---------------------------------------------------------------------------
RECEIVING_UPLOAD = gettext_noop("Receiving the upload.")
UPLOADED = gettext_noop("Uploaded; waiting for a worker to check and convert it.")
ALL_BYTES_RECEIVED = gettext_noop("All %(size)s bytes received.")

# --- The import ---------------------------------------------------------------------------
DOWNLOADING = gettext_noop("Downloading.")
VERIFYING_UPLOAD = gettext_noop("Verifying the upload.")
# ``message`` is the image's status message (one of the two above).
ATTEMPT = gettext_noop("Attempt %(attempt)s: %(message)s")
CONVERTING = gettext_noop("Converting %(source_format)s to qcow2.")
READY = gettext_noop(
    "Ready: %(source_format)s image of %(received)s bytes stored as qcow2 (%(file_size)s "
    "bytes, a %(disk_gib)s GiB disk)."
)

# --- Why an import failed -----------------------------------------------------------------
UPLOAD_INCOMPLETE = gettext_noop("The uploaded file is missing or incomplete; upload it again.")
CHECKSUM_MISMATCH = gettext_noop(
    "Checksum mismatch: the file's sha256 is %(digest)s, not %(expected)s."
)
# ``quota`` is the quota's refusal ("Quota exceeded for ...").
NEEDS_STORAGE = gettext_noop("The image needs %(gib)s GiB of storage. %(quota)s")
FAILED_UNEXPECTEDLY = gettext_noop("The import failed unexpectedly (%(error)s).")
INTERRUPTED_ONCE = gettext_noop(
    "The import was interrupted %(attempts)s time (its worker stopped); try again."
)
INTERRUPTED = gettext_noop(
    "The import was interrupted %(attempts)s times (its worker stopped); try again."
)
UPLOAD_ABANDONED = gettext_noop("The upload was abandoned (no data for too long).")

# --- Deleting and publishing --------------------------------------------------------------
DELETED = gettext_noop("Deleted.")
DELETED_STORAGE_RELEASED = gettext_noop("Deleted; its storage was released.")
PUBLISHED = gettext_noop("Published to every tenant by the platform staff.")
UNPUBLISHED = gettext_noop("Private to this tenant again.")
