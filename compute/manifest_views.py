"""A VM or workload as the API returns it, in YAML or JSON (``?format=yaml|json``), so a
person sees exactly what a script reading ``/api/v1/`` gets; and "Create from YAML",
where a person pastes what a script would POST there: the API's serializer checks it and
the API's create function (the same service call) makes it, so both accept and refuse
the same documents."""

from __future__ import annotations

import json
from collections.abc import Callable

import yaml
from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods
from rest_framework.renderers import JSONRenderer

from compute import selectors
from compute.api import (
    VMCreateSerializer,
    vm_create_document,
    vm_create_from_api,
    vm_representation,
)
from compute.choices import DesiredState
from compute.manifests import FIELD, MAX_BYTES, manifest_parse
from compute.workload_api import (
    WorkloadCreateSerializer,
    workload_create_document,
    workload_create_from_api,
    workload_representation,
)
from portal.api.errors import flatten_errors
from portal.exceptions import (
    ApplicationError,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    ValidationError,
)
from portal.web import tenant_view
from tenants import selectors as tenant_selectors

FORMATS = ("yaml", "json")


def _manifest(
    request, tenant, *, data: dict, kind: str, name: str, back: str, api: str, copy: str | None
):
    # Through the API's own renderer first: the same types and values a client receives.
    data = json.loads(JSONRenderer().render(data))
    chosen = request.GET.get("format", "yaml")
    error = None
    if chosen not in FORMATS:
        error = gettext("Unknown format %(format)s: choose yaml or json.") % {
            "format": repr(chosen)
        }
        chosen = "yaml"
    text = _dump(data, chosen)
    if copy:
        copy = f"{copy}?from={name}&format={chosen}"
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
            "copy": copy,
        },
        status=400 if error else 200,
    )


def _dump(data: dict, chosen: str) -> str:
    if chosen == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


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
        copy=reverse("vm-create-yaml", kwargs={"tenant": tenant.slug})
        if tenant_selectors.can(request.user, tenant, "vm.create")
        else None,
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
        copy=reverse("workload-create-yaml", kwargs={"tenant": tenant.slug})
        if tenant_selectors.can(request.user, tenant, "workload.create")
        else None,
    )


def _create_from_manifest(
    request,
    tenant,
    *,
    kind: str,
    serializer_class: type,
    create: Callable[..., object],
    copied: Callable[[str], dict],
    example: Callable[[], dict],
    form_url: str,
    accepted: str,
    detail: str,
):
    """The "Create from YAML" page of ``kind``: GET shows the text to start from (a copy
    of ``?from=<name>``, else an example), POST parses it, checks it with the API's
    ``serializer_class`` and calls ``create`` (the API's create function); any refusal is
    shown next to the text, which stays as typed, and nothing is created."""
    chosen = request.GET.get("format", "yaml")
    chosen = chosen if chosen in FORMATS else "yaml"
    summary, errors = None, {}
    if request.method == "POST":
        text = request.POST.get(FIELD, "")
        try:
            data = manifest_parse(text)
            serializer = serializer_class(data=data)
            if not serializer.is_valid():
                raise ValidationError(
                    gettext("The manifest is not valid."),
                    errors=flatten_errors(serializer.errors),
                )
            obj = create(actor=request.user, tenant=tenant, data=serializer.validated_data)
        except QuotaExceeded as error:  # a refusal like any other, on its spec field
            summary, errors = error.message, error.errors
        except PermissionDenied as error:
            raise DjangoPermissionDenied(error.message) from None
        except ApplicationError as error:
            summary, errors = error.message, error.errors
        else:
            messages.success(request, accepted % {"name": obj.name})
            return redirect(detail, tenant=tenant.slug, name=obj.name)
    else:
        source = request.GET.get("from")
        text = _dump(copied(source) if source else example(), chosen)
    return render(
        request,
        "compute/manifest_form.html",
        {
            "tenant": tenant,
            "kind": kind,
            "text": text,
            "summary": summary,
            # The text's own problems first, then each field by its API path.
            "text_errors": errors.get(FIELD, []),
            "field_errors": sorted((k, v) for k, v in errors.items() if k != FIELD),
            "form_url": form_url,
            "max_kib": MAX_BYTES // 1024,
        },
        status=400 if summary else 200,
    )


def _copy_or_404(get, request, tenant, name: str):
    try:
        return get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None


def _vm_example(tenant) -> dict:
    image = selectors.images_for_tenant(tenant).first()
    return {
        "metadata": {"name": "web-1", "labels": {"tier": "web"}},
        "spec": {
            "image": image.name if image else "",
            "vcpus": 1,
            "memoryMiB": 512,
            "desiredState": DesiredState.RUNNING.value,
        },
    }


@tenant_view("vm.create")
@require_http_methods(["GET", "POST"])
def vm_create_yaml(request, tenant):
    return _create_from_manifest(
        request,
        tenant,
        kind="VM",
        serializer_class=VMCreateSerializer,
        create=vm_create_from_api,
        copied=lambda name: vm_create_document(
            _copy_or_404(selectors.vm_get, request, tenant, name)
        ),
        example=lambda: _vm_example(tenant),
        form_url=reverse("vm-create", kwargs={"tenant": tenant.slug}),
        accepted=gettext("%(name)s accepted: it is being provisioned."),
        detail="vm-detail",
    )


@tenant_view("workload.create")
@require_http_methods(["GET", "POST"])
def workload_create_yaml(request, tenant):
    return _create_from_manifest(
        request,
        tenant,
        kind="Workload",
        serializer_class=WorkloadCreateSerializer,
        create=workload_create_from_api,
        copied=lambda name: workload_create_document(
            _copy_or_404(selectors.workload_get, request, tenant, name)
        ),
        example=lambda: {
            "metadata": {"name": "web", "labels": {"tier": "web"}},
            "spec": {
                "kind": "Deployment",
                "image": "nginx:1.27",
                "replicas": 1,
                "ports": [80],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            },
        },
        form_url=reverse("workload-create", kwargs={"tenant": tenant.slug}),
        accepted=gettext("%(name)s accepted: its pods are being created."),
        detail="workload-detail",
    )
