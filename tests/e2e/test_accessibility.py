"""Every page of the portal passes axe-core (WCAG 2.2 AA, no serious or critical finding):
a staff user walks the tenant pages, the platform pages and the admin, a viewer and a
signed-out visitor see their own versions."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from compute.services import security_groups
from compute.services import vms as vm_services
from tests.conftest import login
from tests.e2e.axe import axe_violations, describe

pytestmark = pytest.mark.e2e


def tenant_pages(slug: str) -> list[str]:
    return [
        "/",
        "/profile/",
        f"/t/{slug}/",
        f"/t/{slug}/vms/",
        f"/t/{slug}/vms/new/",
        f"/t/{slug}/vms/web-1/",
        f"/t/{slug}/vms/web-1/console/",
        f"/t/{slug}/vms/web-1/manifest/",
        f"/t/{slug}/vms/web-1/manifest/?format=json",
        f"/t/{slug}/vms/?q=web&phase=Running&sort=-created",
        f"/t/{slug}/workloads/",
        f"/t/{slug}/workloads/new/",
        f"/t/{slug}/vmpools/",
        f"/t/{slug}/vmpools/new/",
        f"/t/{slug}/autoscalers/",
        f"/t/{slug}/autoscalers/new/",
        f"/t/{slug}/images/",
        f"/t/{slug}/backups/",
        f"/t/{slug}/securitygroups/",
        f"/t/{slug}/securitygroups/default/",
        f"/t/{slug}/events/",
        f"/t/{slug}/webhooks/",
        f"/t/{slug}/members/",
    ]


def admin_pages(user) -> list[str]:
    """The admin index, then each model's list and (where the admin offers it) add form."""
    request = RequestFactory().get("/admin/")
    request.user = user
    pages = ["/staff/migrations/", reverse("admin:index")]
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        if model_admin.has_add_permission(request):
            pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_add"))
    return pages


def walk(page, base: str, paths: list[str]) -> dict[str, str]:
    found = {}
    for path in paths:
        response = page.goto(base + path)
        assert response is not None and response.status < 500, f"{path}: {response.status}"
        assert "securitygroups" not in path or response.status == 200, path
        violations = axe_violations(page)
        if violations:
            found[path] = describe(violations)
    return found


def report(found: dict[str, str]) -> str:
    return "\n".join(f"{path}\n{text}" for path, text in found.items())


def test_every_tenant_and_admin_page_has_no_serious_accessibility_violation(
    demo, make_host, tiny_image, flavors, live_url, new_page
):
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    security_groups.default_group(demo.acme)  # the group pages show one
    page = new_page()
    login(page, live_url, "admin")
    found = walk(page, live_url, tenant_pages("acme") + admin_pages(demo.admin))
    assert not found, report(found)


def test_a_viewer_and_a_signed_out_visitor_see_accessible_pages(
    demo, make_host, tiny_image, live_url, new_page
):
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    security_groups.default_group(demo.acme)  # the group pages show one
    anonymous = new_page()
    found = walk(anonymous, live_url, ["/login/", "/admin/login/"])
    page = new_page()
    login(page, live_url, "carol")
    found |= walk(page, live_url, tenant_pages("acme") + ["/t/acme/nope/"])
    assert not found, report(found)


def test_the_check_reports_a_violation_that_stays_and_ignores_none(new_page):
    # The helper looks twice at a page that fails: a lasting violation is reported.
    page = new_page()
    page.set_content(
        '<html lang="en"><head><title>t</title></head><body><main>'
        '<h1>Pictures</h1><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
        "<button></button></main></body></html>"
    )
    found = {v["id"] for v in axe_violations(page)}
    assert {"image-alt", "button-name"} <= found
