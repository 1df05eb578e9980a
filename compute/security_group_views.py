"""Pages for security groups (``/t/<tenant>/securitygroups/``): the list with the
form that creates one, and a group's page with its rule editor.

Thin like the other pages: ``tenant_view`` resolves the tenant (404 for non-members,
403 for the role), the selectors read, ``compute.services.security_groups`` writes and
decides; a refused rule comes back as field errors on the editor's form.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from compute import selectors
from compute.choices import RuleDirection, RuleProtocol
from compute.services import security_groups as group_services
from compute.volume_forms import ServiceErrorsMixin
from monitoring import live
from portal.exceptions import NotFound, PermissionDenied
from portal.web import form_service_call, message_call, tenant_view
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services


class GroupCreateForm(ServiceErrorsMixin, forms.Form):
    quota_field = "name"

    name = forms.CharField(max_length=200, label=_("Name"), help_text=_("A DNS label, e.g. web."))
    description = forms.CharField(max_length=1000, label=_("Description"), required=False)


class RuleForm(ServiceErrorsMixin, forms.Form):
    """One rule; the service checks ports, CIDR and group (its errors land here)."""

    quota_field = "direction"

    direction = forms.ChoiceField(
        label=_("Direction"), choices=RuleDirection.choices, initial=RuleDirection.INGRESS
    )
    protocol = forms.ChoiceField(
        label=_("Protocol"), choices=RuleProtocol.choices, initial=RuleProtocol.TCP
    )
    port_min = forms.CharField(
        label=_("From port"),
        max_length=20,
        required=False,
        help_text=_("TCP and UDP only; empty: every port."),
    )
    port_max = forms.CharField(
        label=_("To port"),
        max_length=20,
        required=False,
        help_text=_("Empty: the same port."),
    )
    remote_cidr = forms.CharField(
        label=_("Other side (CIDR)"),
        max_length=64,
        required=False,
        help_text=_("e.g. 10.0.0.0/24; 0.0.0.0/0 for anywhere."),
    )
    remote_group = forms.ChoiceField(
        label=_("Or a security group"),
        required=False,
        help_text=_("Its members' interfaces."),
    )

    def __init__(self, *args, groups=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["remote_group"].choices = [("", "—")] + [(g.name, g.name) for g in groups]


def _group_or_404(request, tenant, name: str):
    try:
        return selectors.security_group_get(request.user, tenant, name)
    except NotFound as error:
        raise Http404(error.message) from None


def _authorize(request, tenant, permission: str) -> None:
    try:
        tenant_services.authorize(
            actor=request.user, tenant=tenant, permission=permission, target=request.path
        )
    except PermissionDenied as error:
        raise DjangoPermissionDenied(error.message) from None


@tenant_view("securitygroup.view")
@require_http_methods(["GET", "POST"])
def group_list(request, tenant):
    """The tenant's security groups, and the form that creates one (operators)."""
    form = GroupCreateForm(request.POST or None)
    if request.method == "POST":
        _authorize(request, tenant, "securitygroup.create")
        if form.is_valid():
            group = form_service_call(
                form,
                lambda: group_services.group_create(
                    actor=request.user, tenant=tenant, **form.cleaned_data
                ),
            )
            if group is not None:
                messages.success(
                    request,
                    gettext("Security group %(name)s created: add its rules.")
                    % {"name": group.name},
                )
                return redirect("securitygroup-detail", tenant=tenant.slug, name=group.name)
    groups = list(selectors.security_groups_for_tenant(request.user, tenant))
    return render(
        request,
        "compute/securitygroup_list.html",
        {
            "tenant": tenant,
            "groups": groups,
            "form": form,
            "can_create": tenant_selectors.can(request.user, tenant, "securitygroup.create"),
        },
        status=400 if request.method == "POST" else 200,
    )


@tenant_view("securitygroup.view")
@require_http_methods(["GET", "POST"])
def group_detail(request, tenant, name: str):
    """One group: its rules, the rule editor (add, remove) and the interfaces in it."""
    group = _group_or_404(request, tenant, name)
    others = list(selectors.security_groups_for_tenant(request.user, tenant))
    form = RuleForm(request.POST or None, groups=others)
    if request.method == "POST":
        _authorize(request, tenant, "securitygroup.update")
        if form.is_valid():
            rule = form_service_call(
                form,
                lambda: group_services.rule_add(
                    actor=request.user, group=group, **form.cleaned_data
                ),
            )
            if rule is not None:
                messages.success(
                    request,
                    gettext("Rule added to %(name)s; running VMs get it at once.")
                    % {"name": group.name},
                )
                return redirect("securitygroup-detail", tenant=tenant.slug, name=group.name)
    role = request.role
    members = (
        group.nics.select_related("vm", "network").order_by("vm__name", "name")
        if tenant_selectors.can(request.user, tenant, "vm.view")
        else []
    )
    workloads = []
    if tenant_selectors.can(request.user, tenant, "workload.view"):
        # The default group also holds the workloads that name no group.
        in_group = Q(security_groups=group)
        if group.is_default:
            in_group |= Q(security_groups__isnull=True)
        workloads = selectors.workloads_for_tenant(request.user, tenant).filter(in_group).distinct()
    return render(
        request,
        "compute/securitygroup_detail.html",
        {
            "tenant": tenant,
            "group": group,
            "rules": group.rules.select_related("remote_group").order_by("id"),
            "members": members,
            "workloads": workloads,
            "form": form,
            "allowed": group_services.group_actions(group, role),
            "live_baseline": live.page_baseline(tenant),
        },
        status=400 if request.method == "POST" else 200,
    )


@tenant_view("securitygroup.update")
@require_POST
def rule_remove(request, tenant, name: str, rule: int):
    group = _group_or_404(request, tenant, name)
    message_call(
        request,
        lambda: group_services.rule_remove(actor=request.user, group=group, rule_id=rule),
        gettext("Rule removed from %(name)s.") % {"name": group.name},
    )
    return redirect("securitygroup-detail", tenant=tenant.slug, name=group.name)


@tenant_view("securitygroup.delete")
@require_POST
def group_delete(request, tenant, name: str):
    group = _group_or_404(request, tenant, name)
    if message_call(
        request,
        lambda: group_services.group_delete(actor=request.user, group=group),
        gettext("Security group %(name)s deleted.") % {"name": group.name},
    ):
        return redirect("securitygroup-list", tenant=tenant.slug)
    return redirect("securitygroup-detail", tenant=tenant.slug, name=group.name)
