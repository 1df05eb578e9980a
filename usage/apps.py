"""Usage accounting (metering, rollups, prices, reports) and quota requests."""

from django.apps import AppConfig


class UsageConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "usage"

    def ready(self) -> None:
        from usage import receivers  # noqa: F401 - connects the signal receivers
