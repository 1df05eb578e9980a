"""URL patterns for VM pages (under ``/t/<tenant>/``) and the VM API (under ``/api/v1/``).

``portal.urls`` includes both lists; the paths are SPEC's and stay stable.
"""

from __future__ import annotations

from django.urls import path, re_path

from compute import api, views
from compute.services.vms import ACTIONS

_ACTIONS = "|".join(ACTIONS)

vm_pages = [
    path("vms/", views.vm_list, name="vm-list"),
    path("vms/new/", views.vm_create, name="vm-create"),
    path("vms/<slug:name>/", views.vm_detail, name="vm-detail"),
    re_path(
        rf"^vms/(?P<name>[-a-zA-Z0-9_]+)/(?P<action>{_ACTIONS})/$",
        views.vm_action,
        name="vm-action",
    ),
]

vm_api = [
    path(
        "tenants/<slug:tenant>/virtualmachines/",
        api.VMListView.as_view(),
        name="vm-api-list",
    ),
    path(
        "tenants/<slug:tenant>/virtualmachines/<slug:name>/",
        api.VMDetailView.as_view(),
        name="vm-api-detail",
    ),
    *(
        path(
            f"tenants/<slug:tenant>/virtualmachines/<slug:name>/{action}/",
            view.as_view(),
            name=f"vm-api-{action}",
        )
        for action, view in api.ACTION_VIEWS.items()
    ),
]
