"""Formats of the messages stored for networks and VM interfaces: their events, status
messages and a host's refusal (``portal.texts``)."""

from django.utils import translation
from django.utils.translation import gettext_noop

from compute.choices import NetworkKind

NETWORK_CREATED = gettext_noop(
    "Network %(cidr)s (%(network_kind)s), DHCP %(dhcp_start)s–%(dhcp_end)s."
)
NETWORK_DELETING = gettext_noop("Network %(cidr)s is being removed from its hosts.")
NETWORK_DELETED = gettext_noop("Network %(cidr)s is gone.")

# A host's refusal when no host is named (a named host's is its name and the engine's
# words: nothing to translate, see compute.services.networks.host_refused).
A_HOST_REFUSED = gettext_noop("A host: %(error)s")
A_HOST_SILENT = gettext_noop("A host did not answer: %(error)s")
THE_HOST_SILENT = gettext_noop("The host did not answer: %(error)s")

NIC_ADDED = gettext_noop("Interface %(nic)s (%(mac)s) on network %(network)s.")
NIC_ADDED_FIXED = gettext_noop(
    "Interface %(nic)s (%(mac)s) on network %(network)s, fixed address %(fixed_ip)s."
)
NIC_REMOVING = gettext_noop("Interface %(nic)s (%(mac)s) is being removed.")
NIC_REMOVED = gettext_noop("Interface %(nic)s (%(mac)s) was removed.")
NIC_FAILED = gettext_noop("Interface %(nic)s: %(message)s")
NIC_GROUPS_CHANGED = gettext_noop("Interface %(nic)s is in %(groups)s now (was %(before)s).")
NIC_GROUPS_CHANGED_FROM_NONE = gettext_noop("Interface %(nic)s is in %(groups)s now (was none).")
NIC_FILTER_FAILED = gettext_noop("Security groups not applied: %(failure)s")


def _kind_word(label: str) -> str:
    """A network kind's label as stored (English) in the reader's language."""
    for kind in NetworkKind:
        with translation.override("en"):
            english = str(kind.label)
        if english == label:
            return str(kind.label)
    return label


# A network's kind in a message is shown as the reader's words for it.
ARGUMENTS = {"network_kind": _kind_word}
