"""Formats of a workload's stored messages (Kubernetes Deployments and pods): its events
and status messages (``portal.texts``). Kinds (Deployment, Pod) and the cluster's own
words stay as Kubernetes writes them, inside their placeholders."""

from django.utils.translation import gettext_noop

ACCEPTED = gettext_noop(
    "Accepted: %(kind)s of %(replicas)s × %(cpu)s CPU, %(memory)s, image %(image)s."
)
SCALE_REQUESTED = gettext_noop(
    "Scale from %(before)s to %(replicas)s replicas requested by %(actor)s."
)
RESTART_REQUESTED = gettext_noop("Rollout restart requested by %(actor)s.")
DELETION_REQUESTED = gettext_noop("Deletion requested by %(actor)s.")
DELETED_RELEASED = gettext_noop("Deleted; its quota was released.")
DELETED = gettext_noop("Deleted.")
QUOTA_REFUSED = gettext_noop("%(message)s Its quota reservation was released.")
CANNOT_CREATE_PODS = gettext_noop("The cluster cannot create its pods: %(reason)s")
POD_TERMINATING = gettext_noop("The pod is terminating.")
POD_ENDED = gettext_noop("The pod ended (%(phase)s).")
POD_ENDED_BECAUSE = gettext_noop("The pod ended (%(phase)s, %(reason)s).")
DELETED_OUTSIDE = gettext_noop("The %(kind)s was deleted outside the portal: recreating it.")
MISSING_FROM_CLUSTER = gettext_noop("The %(kind)s was missing from %(cluster)s: recreating it.")
EDITED_IN_CLUSTER = gettext_noop(
    "The %(kind)s was changed in %(cluster)s outside Isotope: its spec is applied again."
)
CLUSTER_UNREACHABLE = gettext_noop(
    "Cluster %(cluster)s is unreachable; last known phase %(phase)s."
)
NO_ANSWER = gettext_noop("The cluster did not answer after %(retries)s retries.")
# A Kubernetes Event about one of the workload's objects: the event's own words follow.
DEPLOYMENT_EVENT = gettext_noop("Deployment %(name)s: %(message)s")
REPLICA_SET_EVENT = gettext_noop("ReplicaSet %(name)s: %(message)s")
POD_EVENT = gettext_noop("Pod %(name)s: %(message)s")
HPA_EVENT = gettext_noop("HorizontalPodAutoscaler %(name)s: %(message)s")
SCALED_BY_AUTOSCALER = gettext_noop(
    "%(workload)s is sized by its autoscaler %(autoscaler)s: change or remove the autoscaler."
)
SERVICE_EVENT = gettext_noop("Service %(name)s: %(message)s")
EVENT_ABOUT = {
    "Deployment": DEPLOYMENT_EVENT,
    "ReplicaSet": REPLICA_SET_EVENT,
    "Pod": POD_EVENT,
    "Service": SERVICE_EVENT,
    "HorizontalPodAutoscaler": HPA_EVENT,
}
# The workload's security groups changed (its pods' group labels; a Deployment rolls).
GROUPS_CHANGED = gettext_noop("%(actor)s put its pods in %(groups)s (were in %(before)s).")
