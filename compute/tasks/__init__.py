"""Celery tasks of the compute app (one module per backend queue)."""

# Live migration (task named under compute.tasks.libvirt, so queue libvirt).
import compute.tasks.migration  # noqa: F401
from compute.tasks import (  # noqa: F401  (registers the tasks)
    backups,
    housekeeping,
    images,
    kubernetes,
    libvirt,
    networks,
    pools,
    snapshots,
    volumes,
)
