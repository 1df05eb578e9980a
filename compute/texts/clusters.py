"""Formats of the messages stored about a tenant's namespace on a Kubernetes cluster:
its provisioning and drift events (``portal.texts``). Object names (joined lists) stay
as Kubernetes names them."""

from django.utils.translation import gettext_noop

PROVISIONED = gettext_noop("Namespace %(namespace)s on %(cluster)s: %(objects)s.")
DRIFT_RECREATED = gettext_noop(
    "Namespace %(namespace)s on %(cluster)s was changed outside the portal: recreated %(created)s."
)
DRIFT_REVERTED = gettext_noop(
    "Namespace %(namespace)s on %(cluster)s was changed outside the portal: reverted "
    "changes to %(repaired)s."
)
DRIFT_RECREATED_REVERTED = gettext_noop(
    "Namespace %(namespace)s on %(cluster)s was changed outside the portal: recreated "
    "%(created)s; reverted changes to %(repaired)s."
)
