"""The portal's Celery app without ``freeze_loaded``: the baseline worker of
``bench/worker_memory.py`` (``celery -A bench.worker_unfrozen worker``)."""

from celery.signals import worker_init

from portal.celery import app, freeze_loaded

worker_init.disconnect(freeze_loaded)

__all__ = ["app"]
