"""Isotope's project package: settings, URLs, ASGI and Celery apps, shared helpers."""

from portal.celery import app as celery_app

__all__ = ("celery_app",)
