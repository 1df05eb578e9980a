"""Celery tasks of the compute app (one module per backend queue)."""

from compute.tasks import housekeeping, libvirt  # noqa: F401  (registers the tasks)
