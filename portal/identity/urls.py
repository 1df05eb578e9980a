"""``/accounts/``: the parts of django-allauth the portal uses, and only those.

No sign-up, e-mail or password-reset pages (platform admins manage local accounts);
``/login/`` and ``/logout/`` (``portal.urls``) are the sign-in pages, also under
allauth's names so that its flows find them.
"""

from allauth.account import views as account_views
from allauth.socialaccount import views as social_views
from allauth.urls import build_provider_urlpatterns
from django.urls import include, path

from portal.identity import views

accounts = [
    path("login/", views.LoginView.as_view(), name="account_login"),
    path("logout/", views.LogoutView.as_view(), name="account_logout"),
    path("inactive/", account_views.account_inactive, name="account_inactive"),
    # allauth asks for the password again before second factors change.
    path("reauthenticate/", account_views.reauthenticate, name="account_reauthenticate"),
    path("2fa/", include("allauth.mfa.urls")),
    path("sso/cancelled/", social_views.login_cancelled, name="socialaccount_login_cancelled"),
    path("sso/error/", social_views.login_error, name="socialaccount_login_error"),
    # When a first sign-on cannot create the user by itself, allauth asks here.
    path("sso/signup/", social_views.signup, name="socialaccount_signup"),
    *build_provider_urlpatterns(),  # /accounts/oidc/<provider id>/login/[callback/]
]
