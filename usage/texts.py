"""Formats of the messages usage stores: quota alerts and quota requests, their events
and notifications (``portal.texts``). Amounts keep their units as written (``+2 VMs``);
a request's reason is the requester's or decider's own words."""

from django.utils import translation
from django.utils.translation import gettext_noop

from tenants.models import QUOTA_LABELS


def _quota_resource(value: str) -> str:
    """A quota resource's name (written in English, or its key) in the reader's
    language."""
    if value in QUOTA_LABELS:
        return str(QUOTA_LABELS[value])
    for label in QUOTA_LABELS.values():
        with translation.override("en"):
            english = str(label)
        if english == value:
            return str(label)
    return value


# A quota resource's name is shown as the reader's word for it.
ARGUMENTS = {"quota_resource": _quota_resource}

# --- Quota alerts ---------------------------------------------------------------------
NEARLY_EXHAUSTED = gettext_noop("Quota nearly exhausted. %(crossed)s.")
NEARLY_EXHAUSTED_NOTICE = gettext_noop(
    "Quota nearly exhausted. %(crossed)s. Request more from the tenant's overview."
)
# One resource past a threshold (inside the two above; several are joined by "; ").
CROSSED = gettext_noop(
    "%(quota_resource)s: %(used)s of %(limit)s %(unit)s (%(percent)s, past %(level)s)"
)
# Several resources: the first, then the others (read back one by one).
CROSSED_AND_MORE = gettext_noop(
    "%(quota_resource)s: %(used)s of %(limit)s %(unit)s (%(percent)s, past %(level)s); %(more)s"
)
NEARLY_EXHAUSTED_TITLE = gettext_noop("%(tenant)s: quota %(percent)s used")

# --- Quota requests -------------------------------------------------------------------
REQUESTED = gettext_noop("%(requester)s asked for %(amounts)s: %(reason)s")
AUTO_APPROVED = gettext_noop(
    "Approved automatically (up to +%(percent)s once every %(days)s days)."
)
APPROVED = gettext_noop("Quota request %(request)s approved by %(actor)s: %(amounts)s.")
APPROVED_BECAUSE = gettext_noop(
    "Quota request %(request)s approved by %(actor)s: %(amounts)s. %(reason)s"
)
PARTLY_APPROVED = gettext_noop(
    "Quota request %(request)s partly approved by %(actor)s: %(amounts)s."
)
PARTLY_APPROVED_BECAUSE = gettext_noop(
    "Quota request %(request)s partly approved by %(actor)s: %(amounts)s. %(reason)s"
)
REJECTED = gettext_noop("Quota request %(request)s rejected by %(actor)s: %(amounts)s.")
REJECTED_BECAUSE = gettext_noop(
    "Quota request %(request)s rejected by %(actor)s: %(amounts)s. %(reason)s"
)
APPROVED_TITLE = gettext_noop("Quota request approved (%(tenant)s)")
PARTLY_APPROVED_TITLE = gettext_noop("Quota request partially approved (%(tenant)s)")
REJECTED_TITLE = gettext_noop("Quota request rejected (%(tenant)s)")
