"""Why a console session closed, as the console's close frame tells the browser (the
reader's language at the socket: ``compute.consumers``; ``portal.texts``)."""

from django.utils.translation import gettext_noop

NO_TICKET = gettext_noop("No console ticket was presented.")
REFUSED = gettext_noop("Console refused.")
UNREACHABLE = gettext_noop("The console server could not be reached.")
VM_STOPPED = gettext_noop("The VM stopped.")
MOVED = gettext_noop("The console moved; reconnecting.")
IDLE = gettext_noop("Closed after no input for a while.")
# A VM that no longer runs reads as compute.texts.vms.VM_IS[phase]; one gone, as this.
VM_DELETED = gettext_noop("The VM is deleted.")
SIGNED_OUT = gettext_noop("Signed out.")
ACCESS_LOST = gettext_noop("You no longer have access to this console.")
NO_VALID_TICKET = gettext_noop("No valid console ticket was presented.")
TICKET_INVALID = gettext_noop("The console ticket is invalid, expired or already used.")
TICKET_OTHER_SESSION = gettext_noop("The console ticket belongs to another session.")
TICKET_OTHER_USER = gettext_noop("The console ticket belongs to another user.")
