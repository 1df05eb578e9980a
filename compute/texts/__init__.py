"""Formats of the messages compute stores: events, status messages, a migration's reason
(``portal.texts``). One module per area; every UPPER_CASE string constant is a format,
marked with ``gettext_noop`` for makemessages, with ``%(name)s`` placeholders only."""

from compute.choices import PHASE_LABELS

# A phase word in a message is shown as the reader's word for it.
ARGUMENTS = {"phase": lambda value: str(PHASE_LABELS.get(value, value))}
