"""Formats of a VM pool's and an autoscaler's stored messages: their events, status
messages and decisions (``portal.texts``)."""

import re

from django.utils import translation
from django.utils.translation import gettext_noop

from compute.choices import AutoscalerMetric, WarmMode


def _autoscaler_metric(value: str) -> str:
    """What an autoscaler measures (its value, or its label's English words before the
    parenthesis, any case) in the reader's words."""
    for metric in AutoscalerMetric:
        with translation.override("en"):
            english = str(metric.label).split(" (")[0]
        if value.lower() in (metric.value, english.lower()):
            return re.split(r" \(|（", str(metric.label))[0]
    return value


# The mode warm members are kept in and an autoscaler's metric are shown in the
# reader's words.
ARGUMENTS = {
    "warm_mode": lambda value: (
        str(WarmMode(value).label).lower() if value in WarmMode.values else value
    ),
    "autoscaler_metric": _autoscaler_metric,
}

# --- A pool's events ------------------------------------------------------------------
WAITING = gettext_noop("Waiting for the controller.")
CREATED = gettext_noop(
    "Created with %(replicas)s replicas of %(vcpus)s vCPU, %(memory_mib)s MiB, image %(image)s."
)
SCALED = gettext_noop("Scaled from %(before)s to %(replicas)s by %(actor)s.")
SCALED_BECAUSE = gettext_noop("Scaled from %(before)s to %(replicas)s by %(actor)s: %(reason)s")
STRATEGY_CHANGED = gettext_noop("Update strategy %(strategy)s by %(actor)s.")
TEMPLATE_CHANGED = gettext_noop(
    "Template %(template)s by %(actor)s: %(vcpus)s vCPU, %(memory_mib)s MiB, image "
    "%(image)s; replacing the members (%(how)s)."
)
REPLACE_RECREATE = gettext_noop("deleting every old member first")
REPLACE_ROLLING = gettext_noop("at most %(max_unavailable)s unavailable")
WARM_CHANGED = gettext_noop("%(warm)s warm members, kept %(warm_mode)s, by %(actor)s.")
UPDATE_PAUSED = gettext_noop("Rolling update paused by %(actor)s.")
UPDATE_RESUMED = gettext_noop("Rolling update resumed by %(actor)s.")
DELETING_MEMBERS = gettext_noop("Deleting its members.")
DELETE_REQUESTED = gettext_noop("Delete requested by %(actor)s.")
DELETED = gettext_noop("Deleted with all its members.")
UPDATE_COMPLETE = gettext_noop("Every member runs template %(template)s.")

# --- Members created, put to work and removed -----------------------------------------
MEMBER_CREATED = gettext_noop("Created member %(vm)s.")
WARM_CREATED = gettext_noop("Created warm member %(vm)s.")
WARM_RESUMED = gettext_noop("Resumed warm member %(vm)s.")
WARM_STARTED = gettext_noop("Started warm member %(vm)s.")
WARM_TAKEN = gettext_noop("Took running warm member %(vm)s.")
WARM_PAUSED = gettext_noop("Paused warm member %(vm)s.")
CANNOT_CREATE = gettext_noop("Cannot create %(vm)s: %(reason)s")
QUOTA_REFUSED = gettext_noop("Quota: %(reason)s")
NAMES_TAKEN = gettext_noop("The names %(pool)s-<n> are taken by other VMs.")
MEMBER_DELETED = gettext_noop("Deleted member %(vm)s: %(why)s.")
# Why a member was deleted (inside MEMBER_DELETED).
WHY_SCALED_DOWN = gettext_noop("scaled down to %(replicas)s")
WHY_REPLACED = gettext_noop("replaced by a member of the new template")
WHY_RECREATED = gettext_noop("recreated from the new template")
WHY_WARM_WANTED = gettext_noop("%(warm)s warm members wanted")
WHY_POOL_DELETING = gettext_noop("the pool is being deleted")
WHY_FAILED = gettext_noop("it failed (%(reason)s)")
WHY_OLD_WARM = gettext_noop("a warm member of an older template")
NO_REASON = gettext_noop("no reason given")
MEMBER_FAILED = gettext_noop("%(vm)s failed: %(reason)s; replacing it.")
ROLLOUT_FAILED = gettext_noop(
    "%(vm)s (template %(template)s) failed: %(reason)s. The update stopped; change the "
    "template to try again."
)

# --- How an update goes, why members are missing --------------------------------------
NO_SURGE = gettext_noop(
    "The quota has no room for an extra member: replacing with 1 member unavailable at a time."
)
# A note of how the update goes followed by NO_SURGE (the notes are joined by a space).
NOTE_AND_NO_SURGE = gettext_noop(
    "%(note)s The quota has no room for an extra member: replacing with 1 member "
    "unavailable at a time."
)
A_MEMBER_FAILED = gettext_noop("A new member failed.")
UPDATE_IS_PAUSED = gettext_noop("The update is paused.")
RECREATE_WAITING = gettext_noop(
    "Recreate: waiting for %(count)s old members to be deleted (their quota is released "
    "before the new ones are made)."
)
RECREATE_MAKING = gettext_noop("Recreate: making the members of the new template.")
NO_QUOTA_FOR_WARM = gettext_noop("No quota left for warm members (%(quota_resource)s).")

# --- A pool's status message ----------------------------------------------------------
STATUS_DELETING = gettext_noop("Deleting %(count)s members.")
STATUS_BLOCKED = gettext_noop("%(active)s of %(replicas)s members. %(blocked)s")
STATUS_UPDATED = gettext_noop("Updated %(updated)s of %(replicas)s.")
STATUS_UPDATED_NOTE = gettext_noop("Updated %(updated)s of %(replicas)s. %(rollout)s")
STATUS_READY = gettext_noop("%(ready)s of %(replicas)s members ready.")
# The same with the warm members counted (and why some are missing).
STATUS_UPDATED_WARM = gettext_noop(
    "Updated %(updated)s of %(replicas)s. %(warm)s of %(wanted)s warm members."
)
STATUS_UPDATED_WARM_NOTE = gettext_noop(
    "Updated %(updated)s of %(replicas)s. %(warm)s of %(wanted)s warm members. %(note)s"
)
STATUS_READY_WARM = gettext_noop(
    "%(ready)s of %(replicas)s members ready. %(warm)s of %(wanted)s warm members."
)
STATUS_READY_WARM_NOTE = gettext_noop(
    "%(ready)s of %(replicas)s members ready. %(warm)s of %(wanted)s warm members. %(note)s"
)

# --- An autoscaler's events and decisions ---------------------------------------------
AUTOSCALER_SUMMARY = gettext_noop(
    "%(low)s-%(high)s replicas of %(pool)s at %(target)s %(autoscaler_metric)s, scale-down window "
    "%(window)s s."
)
AUTOSCALER_DELETED = gettext_noop("Deleted; the pool keeps its size.")
# An autoscaler of a Deployment: its HorizontalPodAutoscaler's words.
AUTOSCALER_DELETED_HPA = gettext_noop(
    "Deleted with its HorizontalPodAutoscaler; the Deployment keeps its size."
)
AUTOSCALER_TARGET_DELETED = gettext_noop("Deleted with what it scaled.")
HPA_SAYS = gettext_noop("HorizontalPodAutoscaler: %(message)s")
HPA_DELETED_OUTSIDE = gettext_noop(
    "The HorizontalPodAutoscaler was deleted outside the portal; recreating it."
)
RESCALED = gettext_noop("New size: %(replicas)s; reason: %(reason)s")
AT_ZERO = gettext_noop("The pool is at 0 replicas.")
ABOVE_MAXIMUM = gettext_noop("Above the maximum %(high)s.")
BELOW_MINIMUM = gettext_noop("Below the minimum %(low)s.")
SCALED_TO_ZERO = gettext_noop("No member to measure: scale the pool by hand to wake it.")
DEPLOYMENT_SCALED_TO_ZERO = gettext_noop(
    "No pod to measure: scale the Deployment by hand to wake it."
)
NO_SAMPLES = gettext_noop(
    "No %(autoscaler_metric)s samples of Ready members in the last %(seconds)s s."
)
# What was measured (inside the decisions below); the percentages carry their sign.
MEASURED_CPU = gettext_noop("CPU utilisation %(utilisation)s (target %(target)s)")
MEASURED_MEMORY = gettext_noop("Memory utilisation %(utilisation)s (target %(target)s)")
WITHIN_RANGE = gettext_noop("%(measured)s: %(current)s replicas are right.")
STABILIZED = gettext_noop(
    "%(measured)s recommends %(proposal)s; keeping %(desired)s, the highest recommendation "
    "of the last %(window)s s."
)
SCALE_UP = gettext_noop("%(measured)s above target: %(current)s → %(desired)s.")
SCALE_DOWN = gettext_noop("%(measured)s below target: %(current)s → %(desired)s.")
LIMITED_BY_STEP = gettext_noop("%(decision)s Limited to %(limited)s (step limit).")
LIMITED_BY_MAXIMUM = gettext_noop("%(decision)s Limited to %(limited)s (maximum).")
LIMITED_BY_MINIMUM = gettext_noop("%(decision)s Limited to %(limited)s (minimum).")
LIMITED_BY_QUOTA = gettext_noop(
    "%(decision)s The quota holds %(more)s more (%(quota_resource)s is the limit)."
)
NOT_SCALING_UP = gettext_noop("Not scaling up: %(reason)s")
NOT_SCALING_UP_BOOT = gettext_noop("Not scaling up: members fail to boot (%(reason)s)")
