"""Pages for tenant networks (``/t/<tenant>/networks/``) and the VM page's interfaces.

Thin: ``tenant_view`` resolves the tenant (404 for non-members, 403 for the role), the
selectors read, ``compute.services.networks`` writes and decides; refusals become field
errors or messages. Deleting a network and removing an interface ask first (a modal
with JavaScript, the browser's plain form post without). An interface's row has an
"Edit groups" form that moves it to other security groups.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from compute import selectors
from compute.choices import NetworkKind
from compute.services import networks as network_services
from compute.volume_forms import ServiceErrorsMixin
from monitoring import live
from portal.exceptions import NotFound, PermissionDenied
from portal.web import form_service_call, message_call, tenant_view
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services


class NetworkCreateForm(ServiceErrorsMixin, forms.Form):
    quota_field = "name"

    name = forms.CharField(
        max_length=200, label=_("Name"), help_text=_("A DNS label, e.g. backend.")
    )
    cidr = forms.CharField(
        label=_("Address range (CIDR)"),
        max_length=64,
        help_text=_("IPv4, /16 to /29, e.g. 10.1.0.0/24."),
    )
    kind = forms.ChoiceField(
        label=_("Kind"), choices=NetworkKind.choices, initial=NetworkKind.ISOLATED, required=False
    )
    gateway = forms.CharField(
        label=_("Gateway"),
        max_length=64,
        required=False,
        help_text=_("Empty: the range's first address."),
    )
    dhcp_start = forms.CharField(label=_("DHCP from"), max_length=64, required=False)
    dhcp_end = forms.CharField(label=_("DHCP to"), max_length=64, required=False)


def _vm_or_404(request, tenant, name: str):
    try:
        return selectors.vm_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None


def _nic_or_404(request, tenant, name: str, nic: str):
    vm = _vm_or_404(request, tenant, name)
    try:
        return vm, selectors.nic_get(request.user, vm, nic)
    except NotFound as error:
        raise Http404(error.message) from None


@tenant_view("network.view")
@require_http_methods(["GET", "POST"])
def network_list(request, tenant):
    """The tenant's networks, and the form that creates one (operators)."""
    can_create = tenant_selectors.can(request.user, tenant, "network.create")
    form = NetworkCreateForm(request.POST or None)
    if request.method == "POST":
        try:
            tenant_services.authorize(
                actor=request.user, tenant=tenant, permission="network.create", target=request.path
            )
        except PermissionDenied as error:
            raise DjangoPermissionDenied(error.message) from None
        if form.is_valid():
            network = form_service_call(
                form,
                lambda: network_services.network_create(
                    actor=request.user, tenant=tenant, **form.cleaned_data
                ),
            )
            if network is not None:
                messages.success(
                    request,
                    gettext("Network %(name)s (%(cidr)s) created.")
                    % {"name": network.name, "cidr": network.cidr},
                )
                return redirect("network-list", tenant=tenant.slug)
    networks = list(selectors.network_list_rows(request.user, tenant))  # interface_count
    for network in networks:
        network.allowed = network_services.network_actions(network, request.role)
    usage = next(u for u in tenant_selectors.quota_usage(tenant) if u.resource == "networks")
    return render(
        request,
        "compute/network_list.html",
        {
            "tenant": tenant,
            "networks": networks,
            "form": form,
            "can_create": can_create,
            "can_delete": tenant_selectors.can(request.user, tenant, "network.delete"),
            "quota": usage,
            "show_bridge": request.user.is_staff,
            "live_baseline": live.page_baseline(tenant),
        },
        status=400 if request.method == "POST" else 200,
    )


@tenant_view("network.delete")
@require_POST
def network_delete(request, tenant, name: str):
    try:
        network = selectors.network_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None
    message_call(
        request,
        lambda: network_services.network_delete(actor=request.user, network=network),
        gettext("Deleting network %(name)s.") % {"name": network.name},
    )
    return redirect("network-list", tenant=tenant.slug)


def _vm_page(tenant, vm) -> str:
    return reverse("vm-detail", kwargs={"tenant": tenant.slug, "name": vm.name}) + "#nics"


@tenant_view("nic.attach")
@require_POST
def nic_add(request, tenant, name: str):
    """The VM page's "Add interface" form."""
    vm = _vm_or_404(request, tenant, name)
    network = request.POST.get("network", "")
    message_call(
        request,
        lambda: network_services.nic_create(
            actor=request.user,
            vm=vm,
            network=network,
            fixed_ip=request.POST.get("fixed_ip", ""),
            security_groups=request.POST.getlist("security_groups"),
        ),
        gettext("Adding an interface on %(network)s to %(name)s.")
        % {"network": network, "name": vm.name},
    )
    return redirect(_vm_page(tenant, vm))


@tenant_view("nic.detach")
@require_POST
def nic_remove(request, tenant, name: str, nic: str):
    vm, found = _nic_or_404(request, tenant, name, nic)
    message_call(
        request,
        lambda: network_services.nic_delete(actor=request.user, nic=found),
        gettext("Removing %(nic)s from %(name)s.") % {"nic": found.name, "name": vm.name},
    )
    return redirect(_vm_page(tenant, vm))


@tenant_view("nic.attach")
@require_POST
def nic_groups(request, tenant, name: str, nic: str):
    """The interface row's "Edit groups" form: the checked groups replace its own."""
    vm, found = _nic_or_404(request, tenant, name, nic)
    groups = list(dict.fromkeys(request.POST.getlist("security_groups")))
    message_call(
        request,
        lambda: network_services.nic_groups_set(actor=request.user, nic=found, groups=groups),
        gettext("%(nic)s of %(name)s is in %(groups)s now.")
        % {"nic": found.name, "name": vm.name, "groups": ", ".join(groups)},
    )
    return redirect(_vm_page(tenant, vm))
