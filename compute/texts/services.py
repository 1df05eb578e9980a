"""Formats of the messages stored for Services (load balancers): their events
(``portal.texts``). Spec fields (``type``, ``selector``, ``ports``) and members
(``name address``) keep the API's words."""

from django.utils.translation import gettext_noop

SERVICE_CREATED = gettext_noop("Service %(service)s created (%(service_type)s).")
SERVICE_SPEC_CHANGED = gettext_noop("%(fields)s changed (generation %(generation)s).")
SERVICE_DELETING = gettext_noop("Service %(service)s is being deleted.")
SERVICE_DELETED = gettext_noop("Service %(service)s deleted.")
SERVICE_MEMBERS = gettext_noop("%(count)s member(s), %(ready)s ready: %(members)s")
SERVICE_MEMBERS_NONE = gettext_noop("%(count)s member(s), %(ready)s ready: none")
