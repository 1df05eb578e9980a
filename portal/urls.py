"""URL map. Web UI paths and ``/api/v1/`` are stable (see SPEC)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from compute import console_api, console_views
from compute import urls as compute_urls
from monitoring import api as monitoring_api
from monitoring import notification_views, prometheus
from monitoring import views as monitoring_views
from portal import views
from portal.identity import urls as identity_urls
from portal.identity import views as identity_views
from tenants import api as tenants_api
from tenants import views as tenants_views
from usage import api as usage_api
from usage import views as usage_views

api_v1 = [
    path("tenants/", tenants_api.TenantListView.as_view(), name="tenant-list"),
    path("tenants/<slug:tenant>/", tenants_api.TenantDetailView.as_view(), name="tenant-detail"),
    path("tenants/<slug:tenant>/quota/", tenants_api.QuotaView.as_view(), name="tenant-quota"),
    path(
        "tenants/<slug:tenant>/quota/requests/",
        usage_api.QuotaRequestListView.as_view(),
        name="quota-request-api-list",
    ),
    path("tenants/<slug:tenant>/usage/", usage_api.UsageView.as_view(), name="tenant-usage"),
    path(
        "tenants/<slug:tenant>/members/",
        tenants_api.MemberListView.as_view(),
        name="tenant-member-list",
    ),
    path(
        "tenants/<slug:tenant>/members/<str:username>/",
        tenants_api.MemberDetailView.as_view(),
        name="tenant-member-detail",
    ),
    path(
        "tenants/<slug:tenant>/events/",
        monitoring_api.EventListView.as_view(),
        name="tenant-event-list",
    ),
    *compute_urls.vm_api,
    *compute_urls.workload_api_urls,
    *compute_urls.image_api_urls,
    *compute_urls.volume_api_urls,
    *compute_urls.network_api_urls,
    *compute_urls.pool_api_urls,
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/console/",
        console_api.VMConsoleView.as_view(),
        name="vm-api-console",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file (?script): the
    # Content-Security-Policy runs no inline script.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

tenant_pages = [
    path("", tenants_views.overview, name="tenant-overview"),
    *compute_urls.vm_pages,
    path("vms/<slug:name>/console/", console_views.vm_console, name="vm-console"),
    path("vms/<slug:name>/console/serial/", console_views.vm_console_serial, name="vm-serial"),
    path("vms/<slug:name>/metrics/", monitoring_views.vm_metrics, name="vm-metrics"),
    *compute_urls.workload_pages,
    *compute_urls.image_pages,
    *compute_urls.volume_pages,
    *compute_urls.network_pages,
    *compute_urls.backup_pages,
    *compute_urls.pool_pages,
    path("events/", monitoring_views.event_list, name="event-list"),
    path("usage/", usage_views.usage_page, name="usage-page"),
    path("usage/export/", usage_views.usage_export, name="usage-export"),
    path("quota/requests/", usage_views.quota_request_create, name="quota-request-create"),
    path("webhooks/", monitoring_views.webhook_list, name="webhook-list"),
    path("webhooks/add/", monitoring_views.webhook_add, name="webhook-add"),
    path("webhooks/<uuid:uid>/delete/", monitoring_views.webhook_delete, name="webhook-delete"),
    path("members/", tenants_views.members, name="tenant-members"),
    path("members/add/", tenants_views.member_add, name="tenant-member-add"),
    path("members/<str:username>/", tenants_views.member_update, name="tenant-member-update"),
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("login/", identity_views.LoginView.as_view(), name="login"),
    path("logout/", identity_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include(identity_urls.accounts)),
    path("search/", views.search, name="search"),
    path("profile/", views.profile, name="profile"),
    path("profile/tokens/<str:key_id>/revoke/", views.token_revoke, name="token-revoke"),
    path(
        "profile/confirmations/",
        views.preferences_confirmations,
        name="preferences-confirmations",
    ),
    path(
        "profile/notifications/",
        notification_views.notification_preferences,
        name="notification-preferences",
    ),
    path("notifications/", notification_views.notification_list, name="notification-list"),
    path("notifications/read/", notification_views.notification_read, name="notification-read"),
    path(
        "notifications/<uuid:uid>/",
        notification_views.notification_open,
        name="notification-open",
    ),
    path("profile/theme/", views.preferences_theme, name="preferences-theme"),
    path("profile/language/", views.preferences_language, name="preferences-language"),
    # The JavaScript half of the catalogue (djangojs.po) for static/js's gettext().
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", prometheus.metrics_view, name="metrics"),
    path("t/<slug:tenant>/", include(tenant_pages)),
    path("staff/", include(compute_urls.staff_pages)),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
]

handler404 = "portal.views.not_found"
