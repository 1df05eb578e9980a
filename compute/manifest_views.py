"""A VM or workload as the API returns it, in YAML or JSON (``?format=yaml|json``), so a
person sees exactly what a script reading ``/api/v1/`` gets."""

from __future__ import annotations

import json

import yaml
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET
from rest_framework.renderers import JSONRenderer

from compute import selectors
from compute.api import vm_representation
from compute.workload_api import workload_representation
from portal.exceptions import NotFound
from portal.web import tenant_view

FORMATS = ("yaml", "json")


def _manifest(request, tenant, *, data: dict, kind: str, name: str, back: str, api: str):
    # Through the API's own renderer first: the same types and values a client receives.
    data = json.loads(JSONRenderer().render(data))
    chosen = request.GET.get("format", "yaml")
    error = None
    if chosen not in FORMATS:
        error = f"Unknown format {chosen!r}: choose yaml or json."
        chosen = "yaml"
    if chosen == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False)
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return render(
        request,
        "compute/manifest.html",
        {
            "tenant": tenant,
            "kind": kind,
            "name": name,
            "text": text,
            "format": chosen,
            "formats": FORMATS,
            "error": error,
            "back": back,
            "api": api,
        },
        status=400 if error else 200,
    )


@tenant_view("vm.view")
@require_GET
def vm_manifest(request, tenant, name: str):
    try:
        vm = selectors.vm_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None
    return _manifest(
        request,
        tenant,
        data=vm_representation(vm, request.user),
        kind="VM",
        name=vm.name,
        back=reverse("vm-detail", kwargs={"tenant": tenant.slug, "name": vm.name}),
        api=reverse("vm-api-detail", kwargs={"tenant": tenant.slug, "name": vm.name}),
    )


@tenant_view("workload.view")
@require_GET
def workload_manifest(request, tenant, name: str):
    try:
        workload = selectors.workload_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None
    return _manifest(
        request,
        tenant,
        data=workload_representation(workload, request.user),
        kind="Workload",
        name=workload.name,
        back=reverse("workload-detail", kwargs={"tenant": tenant.slug, "name": workload.name}),
        api=reverse("workload-api-detail", kwargs={"tenant": tenant.slug, "name": workload.name}),
    )
