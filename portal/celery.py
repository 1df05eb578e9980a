"""The Celery application: Redis broker, JSON only, late acks, one queue per backend."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("isotope")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
