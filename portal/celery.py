"""The Celery application: Redis broker, JSON only, late acks, one queue per backend.

A worker's main process loads every task module and freezes what it loaded out of the
garbage collector's scans (``gc.freeze``) before it forks its pool. Without that, the
first full collection in each forked child walked — and so wrote to — every object
inherited from the parent, and the child's copy-on-write pages became its own: after
provisioning 300 VMs a pool of 4 held 74 MiB of private memory per process instead of
27 MiB (bench/README.md, ``worker_memory``), and every full collection paused its task.
"""

from __future__ import annotations

import gc
import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("isotope")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def freeze_loaded(**_) -> None:
    """In the worker's main process, before the pool starts: the task modules now, then
    everything loaded out of the collector's scans (a frozen object is never collected:
    nothing loaded at start-up is meant to go)."""
    app.loader.import_default_modules()
    gc.collect()
    gc.freeze()
