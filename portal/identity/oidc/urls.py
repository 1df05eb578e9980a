"""allauth's OpenID Connect URL names, served by Isotope's stricter views."""

from allauth.socialaccount import app_settings
from django.urls import include, path

from portal.identity.oidc import views

urlpatterns = [
    path(
        f"{app_settings.OPENID_CONNECT_URL_PREFIX}/<str:provider_id>/",
        include(
            [
                path("login/", views.login, name="openid_connect_login"),
                path("login/callback/", views.callback, name="openid_connect_callback"),
            ]
        ),
    )
]
