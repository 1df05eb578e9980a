"""The Celery application: Redis broker, JSON only, late acks, one queue per backend.

A worker's main process loads every task module and freezes what it loaded out of the
garbage collector's scans (``gc.freeze``) before it forks its pool. Without that, the
first full collection in each forked child walked — and so wrote to — every object
inherited from the parent, and the child's copy-on-write pages became its own: after
provisioning 300 VMs the median process of a pool of 4 held 74 MiB of private memory
instead of 27 MiB (bench/README.md, ``worker_memory``), and every full collection paused
its task.
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
def freeze_loaded(sender=None, **_) -> None:
    """In the main process of a worker that forks its pool (prefork, as ``deploy/`` and
    ``make run`` run it), before the pool starts: the task modules (loaded once: a worker
    has loaded them by now), then everything loaded out of the collector's scans (a
    frozen object is never collected: nothing loaded at start-up is meant to go). A
    worker of threads runs in a process that may have loaded other things by then (a
    test's worker): nothing is frozen there."""
    pool = getattr(sender, "pool_cls", "")
    if "prefork" not in (pool if isinstance(pool, str) else getattr(pool, "__module__", "")):
        return
    app.loader.init_worker()
    gc.collect()
    gc.freeze()
