"""Monitoring: events, live updates over websockets, tenant webhooks."""

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"

    def ready(self) -> None:
        from monitoring import receivers  # noqa: F401 - connects the signal receivers
