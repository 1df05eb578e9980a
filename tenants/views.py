"""Tenant pages: overview with quota bars, members."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_http_methods, require_POST

from portal.exceptions import ApplicationError
from portal.web import tenant_view
from tenants import selectors, services
from tenants.choices import Role


@tenant_view("tenant.view")
def overview(request, tenant):
    return render(
        request,
        "tenants/overview.html",
        {
            "tenant": tenant,
            "usage": selectors.quota_usage(tenant),
            "members": selectors.memberships_of(tenant),
        },
    )


@tenant_view("member.view")
@require_http_methods(["GET"])
def members(request, tenant):
    return render(
        request,
        "tenants/members.html",
        {
            "tenant": tenant,
            "members": selectors.memberships_of(tenant),
            "roles": Role.choices,
        },
    )


@tenant_view("member.manage")
@require_POST
def member_add(request, tenant):
    try:
        membership = services.membership_add(
            actor=request.user,
            tenant=tenant,
            user=request.POST.get("username", "").strip(),
            role=request.POST.get("role", Role.VIEWER),
        )
        messages.success(
            request,
            gettext("%(username)s added as %(role)s.")
            % {"username": membership.user.username, "role": membership.role},
        )
    except ApplicationError as error:
        messages.error(request, error.message)
    return redirect("tenant-members", tenant=tenant.slug)


@tenant_view("member.manage")
@require_POST
def member_update(request, tenant, username: str):
    try:
        if request.POST.get("remove"):
            services.membership_remove(actor=request.user, tenant=tenant, user=username)
            messages.success(
                request,
                gettext("%(username)s removed from %(slug)s.")
                % {"username": username, "slug": tenant.slug},
            )
        else:
            membership = services.membership_set_role(
                actor=request.user, tenant=tenant, user=username, role=request.POST.get("role", "")
            )
            messages.success(
                request,
                gettext("%(username)s is now %(role)s.")
                % {"username": username, "role": membership.role},
            )
    except ApplicationError as error:
        messages.error(request, error.message)
    return redirect("tenant-members", tenant=tenant.slug)
