from django.apps import AppConfig


class ComputeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "compute"

    def ready(self) -> None:
        from compute import receivers  # noqa: F401 - connects the signal receivers
