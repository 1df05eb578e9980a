from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "portal.identity"
    label = "identity"
    verbose_name = "Identity"

    def ready(self) -> None:
        from portal.identity import audit, sso  # noqa: F401 - signal receivers
