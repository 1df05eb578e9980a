"""The Kubernetes backend: ``backend.py`` talks to the API server, ``manifests.py``
translates specs into objects, ``watch.py`` lists and watches them."""

from compute.backends.kubernetes.backend import KubernetesBackend

__all__ = ["KubernetesBackend"]
