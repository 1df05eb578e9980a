"""Formats of the messages stored for security groups: their events and a host's
refusal of a group's filter (``portal.texts``). A rule appears in its notation
(``ingress tcp port 22 from 0.0.0.0/0``), as the API and the audit log write it."""

from django.utils.translation import gettext_noop

GROUP_CREATED = gettext_noop("Security group %(group)s created.")
DEFAULT_GROUP_CREATED = gettext_noop("Default security group created.")
GROUP_DELETED = gettext_noop("Security group %(group)s deleted.")
RULES_REPLACED = gettext_noop("%(group)s has %(count)s rules.")
RULE_ADDED = gettext_noop("Rule added: %(rule)s.")
RULE_REMOVED = gettext_noop("Rule removed: %(rule)s.")
FILTER_APPLIED = gettext_noop("Rules applied on %(hosts)s host(s) to the running interfaces.")
