"""Pages for Services (``/t/<tenant>/services/``): the list with the form that creates
one (one port; more on its page), and a Service's page with its members (pods and VMs,
their addresses and readiness), which ``static/js/services.js`` keeps live, and the form
that changes its type (ClusterIP ↔ NodePort) and its ports (a table of rows: change,
add, remove).

Thin like the other pages: ``tenant_view`` resolves the tenant (404 for non-members,
403 for the role), the selectors read, ``compute.services.load_balancers`` writes and
decides; a refusal comes back as field errors on the form.
"""

from __future__ import annotations

import re

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from compute import selectors
from compute.choices import SERVICE_TYPES, PortProtocol
from compute.security_group_views import _authorize
from compute.services import load_balancers as service_services
from compute.volume_forms import ServiceErrorsMixin
from monitoring import live
from portal.exceptions import ApplicationError, NotFound, PermissionDenied
from portal.web import form_service_call, message_call, tenant_view
from tenants import selectors as tenant_selectors

# The service's error keys for the form's one port.
_PORT_ERRORS = {
    "ports[0].name": "port_name",
    "ports[0].protocol": "protocol",
    "ports[0].port": "port",
    "ports[0].target_port": "target_port",
    "ports": "port",
}


class ServicePortForm(ServiceErrorsMixin, forms.Form):
    """The type and the one port the pages edit (more ports: through the API)."""

    quota_field = "name"

    service_type = forms.ChoiceField(label=_("Type"), choices=SERVICE_TYPES, initial="ClusterIP")
    port_name = forms.CharField(
        max_length=63, required=False, label=_("Port name"), help_text=_("e.g. http (optional).")
    )
    protocol = forms.ChoiceField(label=_("Protocol"), choices=PortProtocol.choices, initial="TCP")
    port = forms.CharField(max_length=20, label=_("Port"), help_text=_("1–65535, e.g. 80."))
    target_port = forms.CharField(
        max_length=20,
        required=False,
        label=_("Target port"),
        help_text=_(
            "The members' port (empty: the same), or a pod's container port name "
            "(VMs serve numbered ports only)."
        ),
    )

    def add_service_error(self, error) -> None:
        if error.errors:
            error.errors = {
                _PORT_ERRORS.get(key, key): messages for key, messages in error.errors.items()
            }
        super().add_service_error(error)

    def ports(self) -> list[dict]:
        data = self.cleaned_data
        return [
            {
                "name": data["port_name"],
                "protocol": data["protocol"],
                "port": data["port"],
                "target_port": data["target_port"],
            }
        ]


class ServiceCreateForm(ServicePortForm):
    field_order = ["name", "service_type", "selector"]

    name = forms.CharField(
        max_length=200,
        label=_("Name"),
        help_text=_("A DNS label starting with a letter, e.g. web."),
    )
    selector = forms.CharField(
        max_length=2000,
        label=_("Selector"),
        help_text=_("Labels the members carry, e.g. app=web (several: app=web, tier=front)."),
    )

    def clean_selector(self) -> dict:
        labels = {}
        for part in self.cleaned_data["selector"].split(","):
            if not part.strip():
                continue
            key, equals, value = part.partition("=")
            if not equals or not key.strip():
                raise forms.ValidationError(gettext("Write each label as key=value, e.g. app=web."))
            labels[key.strip()] = value.strip()
        return labels

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "service_type": data["service_type"],
            "selector": data["selector"],
            "ports": self.ports(),
        }


class ServiceChangeForm(ServiceErrorsMixin, forms.Form):
    """A Service's type; its ports are the rows of :data:`PortFormSet` beside it."""

    quota_field = "service_type"

    service_type = forms.ChoiceField(label=_("Type"), choices=SERVICE_TYPES, initial="ClusterIP")


class PortRowForm(forms.Form):
    """One row of the ports table: a row with no port number is left out."""

    name = forms.CharField(max_length=63, required=False, label=_("Port name"))
    protocol = forms.ChoiceField(label=_("Protocol"), choices=PortProtocol.choices, initial="TCP")
    port = forms.CharField(max_length=20, required=False, label=_("Port"))
    target_port = forms.CharField(max_length=20, required=False, label=_("Target port"))


# The page edits every port of a Service: its rows, one blank row to add one (more with
# "Add a port"), each with "Remove". The service checks the ports (its errors come back
# on the row and field they name).
PortFormSet = forms.formset_factory(
    PortRowForm, extra=1, can_delete=True, max_num=service_services.MAX_PORTS, absolute_max=64
)
_ROW_FIELDS = {"name": "name", "protocol": "protocol", "port": "port", "target_port": "target_port"}
_ROW_ERROR = re.compile(r"^ports\[(\d+)\](?:\.(\w+))?$")


def port_formset(service, data=None):
    initial = [
        {
            "name": port["name"],
            "protocol": port["protocol"],
            "port": port["port"],
            "target_port": port["targetPort"],
        }
        for port in service.ports
    ]
    return PortFormSet(data, initial=initial, prefix="ports")


def formset_ports(formset) -> tuple[list[dict], list[int]]:
    """The ports the rows give, in order, and the row each came from."""
    ports, rows = [], []
    for index, row in enumerate(formset.forms):
        data = row.cleaned_data
        if not data or data.get("DELETE") or not str(data.get("port") or "").strip():
            continue
        ports.append(
            {
                "name": data["name"],
                "protocol": data["protocol"],
                "port": data["port"],
                "target_port": data["target_port"],
            }
        )
        rows.append(index)
    return ports, rows


def formset_service_error(form, formset, rows: list[int], error) -> None:
    """A refusal on the rows and fields it names (``ports[i].port`` → row i's port)."""
    other = {}
    for key, texts in (error.errors or {}).items():
        found = _ROW_ERROR.match(key)
        if found and int(found.group(1)) < len(rows):
            row = formset.forms[rows[int(found.group(1))]]
            field = _ROW_FIELDS.get(found.group(2) or "")
            for text in texts:
                row.add_error(field, text)
        elif key == "ports":
            formset._non_form_errors = formset.error_class(texts)
        else:
            other[key] = texts
    if other or not error.errors:
        error.errors = other
        form.add_service_error(error)


def _service_or_404(request, tenant, name: str):
    try:
        return selectors.service_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None


@tenant_view("service.view")
@require_http_methods(["GET", "POST"])
def service_list(request, tenant):
    """The tenant's Services, and the form that creates one (operators)."""
    form = ServiceCreateForm(request.POST or None)
    if request.method == "POST":
        _authorize(request, tenant, "service.create")
        if form.is_valid():
            service = form_service_call(
                form,
                lambda: service_services.service_create(
                    actor=request.user, tenant=tenant, **form.service_kwargs()
                ),
            )
            if service is not None:
                return redirect("service-detail", tenant=tenant.slug, name=service.name)
    baseline = live.page_baseline(tenant)
    return render(
        request,
        "compute/service_list.html",
        {
            "tenant": tenant,
            "services": list(selectors.services_for_tenant(request.user, tenant)),
            "form": form,
            "can_create": tenant_selectors.can(request.user, tenant, "service.create"),
            "live_baseline": baseline,
        },
        status=400 if request.method == "POST" else 200,
    )


def _detail(request, tenant, service, baseline, form=None, formset=None, status: int = 200):
    allowed = service_services.service_actions(service, request.role)
    if form is None and "update" in allowed:
        form = ServiceChangeForm(initial={"service_type": service.service_type})
        formset = port_formset(service)
    return render(
        request,
        "compute/service_detail.html",
        {
            "tenant": tenant,
            "service": service,
            "allowed": allowed,
            "form": form,
            "formset": formset,
            "live_baseline": baseline,
        },
        status=status,
    )


@tenant_view("service.view")
def service_detail(request, tenant, name: str):
    """One Service: its spec, what the cluster allocated and its members, live; the
    form that changes its type and port (operators)."""
    baseline = live.page_baseline(tenant)  # read before the Service (tenant_view)
    return _detail(request, tenant, _service_or_404(request, tenant, name), baseline)


@tenant_view("service.update")
@require_POST
def service_update(request, tenant, name: str):
    """Change the Service's type and its ports (the rows of the ports table: change,
    add, remove); field errors come back on the rows with nothing changed."""
    baseline = live.page_baseline(tenant)
    service = _service_or_404(request, tenant, name)
    form = ServiceChangeForm(request.POST)
    # A post without the ports table (an older page, a script) changes only the type.
    with_ports = "ports-TOTAL_FORMS" in request.POST
    formset = port_formset(service, request.POST if with_ports else None)
    if form.is_valid() and (not with_ports or formset.is_valid()):
        ports, rows = formset_ports(formset) if with_ports else (None, [])
        try:
            changed = service_services.service_update(
                actor=request.user,
                service=service,
                service_type=form.cleaned_data["service_type"],
                ports=ports,
            )
        except PermissionDenied as error:
            raise DjangoPermissionDenied(error.message) from None
        except ApplicationError as error:
            formset_service_error(form, formset, rows, error)
        else:
            messages.success(
                request,
                gettext("Service %(name)s is being changed: %(type)s.")
                % {"name": changed.name, "type": changed.service_type},
            )
            return redirect("service-detail", tenant=tenant.slug, name=service.name)
    return _detail(request, tenant, service, baseline, form, formset, status=400)


@tenant_view("service.delete")
@require_POST
def service_delete(request, tenant, name: str):
    service = _service_or_404(request, tenant, name)
    message_call(
        request,
        lambda: service_services.service_delete(actor=request.user, service=service),
        gettext("Service %(name)s is being deleted.") % {"name": service.name},
    )
    return redirect("service-list", tenant=tenant.slug)
