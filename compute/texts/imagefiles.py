"""Formats of the reasons an image file or URL is refused (``compute.imagefiles``): an
image's stored failure message, or a field error on ``url`` shown in the requester's
language (``portal.texts``). Sizes are passed formatted as the English text shows them
(``f"{size:,}"``, ``f"{gib:,.1f}"``); words from qemu-img, TLS or the server stay as they
came."""

from django.utils.translation import gettext_noop

# --- The URL --------------------------------------------------------------------------------
URL_MISSING = gettext_noop("Give the URL of a qcow2 or raw image.")
URL_TOO_LONG = gettext_noop("The URL is longer than 2000 characters.")
URL_INVALID = gettext_noop("This is not a valid URL.")
URL_SCHEME = gettext_noop("Only http:// and https:// URLs can be imported.")
URL_NO_HOST = gettext_noop("The URL has no host.")
URL_CREDENTIALS = gettext_noop("Credentials in the URL are not allowed.")
URL_PORT = gettext_noop("The URL's port is not valid.")
URL_SPACES = gettext_noop("The URL contains spaces or control characters.")
# ``refusal`` is the destination check's own sentence ("... resolves to a non-public ...").
NOT_PUBLIC = gettext_noop("%(refusal)s Images are imported from public addresses only.")

# --- Fetching -------------------------------------------------------------------------------
TLS_FAILED = gettext_noop("TLS failed with %(host)s: %(reason)s")
FETCH_FAILED = gettext_noop("Could not fetch from %(host)s: %(error)s")
REDIRECT_WITHOUT_LOCATION = gettext_noop("HTTP %(status)s without a Location header.")
SERVER_ANSWERED = gettext_noop("The server answered HTTP %(status)s %(reason)s.")
TOO_MANY_REDIRECTS = gettext_noop("More than %(count)s redirects.")
DECLARED_TOO_LARGE = gettext_noop(
    "The server says the file has %(size)s bytes, more than the %(limit)s bytes allowed; "
    "nothing was downloaded."
)
BROKE_OFF_WITH_ERROR = gettext_noop("The transfer broke off after %(received)s bytes: %(error)s")
DOWNLOAD_TOO_LARGE = gettext_noop(
    "The download passed %(limit)s bytes (the most allowed for this import); it was stopped "
    "and refused."
)
BROKE_OFF_SHORT = gettext_noop("The transfer broke off after %(received)s of %(total)s bytes.")

# --- qemu-img -------------------------------------------------------------------------------
NO_QEMU_IMG = gettext_noop("qemu-img is not installed on this worker (Debian: qemu-utils).")
INFO_TIMEOUT = gettext_noop("qemu-img could not read the file in time.")
INFO_FAILED = gettext_noop("qemu-img cannot read the file: %(reason)s")
INFO_UNREADABLE = gettext_noop("qemu-img gave an unreadable answer.")
CONVERT_FAILED = gettext_noop("qemu-img could not convert the image: %(reason)s")
CONVERTED_HAS_BACKING = gettext_noop("The converted image has a backing file; refused.")

# --- What the file is -----------------------------------------------------------------------
FILE_EMPTY = gettext_noop("The file is empty.")
WRONG_FORMAT = gettext_noop("The file is %(format)s; upload qcow2 or raw.")
UNKNOWN_FORMAT = gettext_noop("The file is of an unknown format; upload qcow2 or raw.")
# ``file`` is the backing file's name as Python's repr() shows it.
BACKING_FILE = gettext_noop(
    "The qcow2 image has a backing file (%(file)s); upload a standalone image "
    "(qemu-img convert -O qcow2 flattens it)."
)
EXTERNAL_DATA_FILE = gettext_noop("The qcow2 image keeps its data in an external file; refused.")
ENCRYPTED = gettext_noop("Encrypted qcow2 images are not supported.")
CORRUPT = gettext_noop("The qcow2 image is marked corrupt.")
RAW_TOO_SMALL = gettext_noop(
    "The file has %(size)s bytes: too small to be a disk image (raw images start at "
    "%(minimum)s bytes)."
)
TEXT_FILE = gettext_noop(
    "The file is text (e.g. an HTML page), not a disk image; upload qcow2 or raw."
)
NOT_WHOLE_SECTORS = gettext_noop(
    "The file is not a disk image: %(size)s bytes is not a whole number of 512-byte sectors."
)
NO_SIZE = gettext_noop("The image has no size.")
DISK_TOO_LARGE = gettext_noop(
    "The image's disk is %(size)s GiB; at most %(maximum)s GiB are supported."
)
