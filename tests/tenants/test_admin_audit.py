"""What platform staff do to accounts, permission groups, tenants and API tokens in
Django admin shows in the audit log: who did it, to what, and what changed. A deletion
that would leave a tenant's running resources behind is refused and changes nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from compute.models import KubernetesCluster, TenantNamespace
from monitoring import crypto
from tenants import services
from tenants.models import ApiToken, AuditLog, Membership, Quota, Tenant
from tests.conftest import messages_of
from tests.tenants.test_admin import fast_passwords, form_data  # noqa: F401 (autouse here too)

pytestmark = [pytest.mark.unit, pytest.mark.django_db]
User = get_user_model()


def user_page(client: Client, user) -> tuple[str, dict]:
    url = f"/admin/auth/user/{user.pk}/change/"
    return url, form_data(client.get(url).content.decode(), "user_form")


# --- Accounts ----------------------------------------------------------------------------
def test_granting_staff_and_superuser_in_admin_is_audited_with_the_values(demo, staff):
    url, data = user_page(staff, demo.outsider)
    data.update(is_staff="on", is_superuser="on")
    response = staff.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]

    erin = User.objects.get(pk=demo.outsider.pk)
    assert erin.is_staff and erin.is_superuser
    entry = AuditLog.objects.get(action="user.update")
    assert (entry.actor, entry.target) == (demo.admin, "user/erin")
    assert entry.detail == {
        "fields": ["is_staff", "is_superuser"],
        "is_staff": {"from": False, "to": True},
        "is_superuser": {"from": False, "to": True},
    }


def test_a_user_page_opened_before_another_admin_granted_staff_does_not_take_it_back(demo, staff):
    url, data = user_page(staff, demo.outsider)
    services.user_update(actor=demo.admin, user=demo.outsider, changes={"is_staff": True})
    data["first_name"] = "Erin"  # edited on the page; is_staff was shown unticked
    response = staff.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]

    erin = User.objects.get(pk=demo.outsider.pk)
    assert erin.first_name == "Erin" and erin.is_staff
    [mine] = AuditLog.objects.filter(action="user.update", detail__fields=["first_name"])
    assert mine.actor == demo.admin


def test_the_repro_post_without_the_shown_values_is_audited_too(demo, staff):
    """A form posted by a script (no copies of the values shown) is compared with the
    row: the grant is still written and audited."""
    response = staff.post(
        f"/admin/auth/user/{demo.outsider.pk}/change/",
        {
            "username": "erin",
            "email": "erin@example.com",
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.get(pk=demo.outsider.pk).is_superuser
    entry = AuditLog.objects.get(action="user.update")
    assert entry.target == "user/erin"
    assert entry.detail["is_superuser"] == {"from": False, "to": True}


def test_creating_a_user_in_admin_is_audited(demo, staff):
    data = form_data(staff.get("/admin/auth/user/add/").content.decode(), "user_form")
    data.update(
        username="frank",
        usable_password="true",
        password1="a-Long-enough-passw0rd",
        password2="a-Long-enough-passw0rd",
    )
    response = staff.post("/admin/auth/user/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    frank = User.objects.get(username="frank")
    assert frank.check_password("a-Long-enough-passw0rd")
    entry = AuditLog.objects.get(action="user.create")
    assert (entry.actor, entry.target) == (demo.admin, "user/frank")
    assert entry.detail == {"is_staff": False, "is_superuser": False, "password": True}


def test_setting_or_disabling_a_password_in_admin_is_audited_without_the_password(demo, staff):
    url = f"/admin/auth/user/{demo.carol.pk}/password/"
    response = staff.post(
        url,
        {"usable_password": "true", "password1": "n3w-Secret-pass", "password2": "n3w-Secret-pass"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert User.objects.get(pk=demo.carol.pk).check_password("n3w-Secret-pass")
    entry = AuditLog.objects.get(action="user.set_password")
    assert (entry.actor, entry.target, entry.detail) == (demo.admin, "user/carol", {"usable": True})
    assert "n3w-Secret-pass" not in str(entry.detail)

    response = staff.post(url, {"usable_password": "false", "unset-password": "1"})
    assert response.status_code == 302
    assert not User.objects.get(pk=demo.carol.pk).has_usable_password()
    last = AuditLog.objects.filter(action="user.set_password").latest("pk")
    assert last.detail == {"usable": False}


def test_a_mismatched_password_in_admin_changes_nothing_and_audits_nothing(demo, staff):
    before = User.objects.get(pk=demo.carol.pk).password
    response = staff.post(
        f"/admin/auth/user/{demo.carol.pk}/password/",
        {"usable_password": "true", "password1": "n3w-Secret-pass", "password2": "other-Pass-1"},
    )
    assert response.status_code == 200  # the form again, with its error
    assert User.objects.get(pk=demo.carol.pk).password == before
    assert not AuditLog.objects.filter(action="user.set_password").exists()


def test_changing_a_users_groups_and_permissions_in_admin_is_audited_by_name(demo, staff):
    operators = Group.objects.create(name="operators")
    view_vm = Permission.objects.get(codename="view_virtualmachine")
    url, data = user_page(staff, demo.outsider)
    response = staff.post(
        url, {**data, "groups": [str(operators.pk)], "user_permissions": [str(view_vm.pk)]}
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    erin = User.objects.get(pk=demo.outsider.pk)
    assert list(erin.groups.all()) == [operators]
    assert list(erin.user_permissions.all()) == [view_vm]
    groups = AuditLog.objects.get(action="user.set_groups")
    assert (groups.actor, groups.target) == (demo.admin, "user/erin")
    assert groups.detail == {"added": ["operators"], "removed": []}
    perms = AuditLog.objects.get(action="user.set_permissions")
    assert perms.detail == {"added": ["compute.view_virtualmachine"], "removed": []}


def test_a_permission_group_created_changed_and_deleted_in_admin_is_audited(demo, staff):
    view_vm = Permission.objects.get(codename="view_virtualmachine")
    response = staff.post("/admin/auth/group/add/", {"name": "support"})
    assert response.status_code == 302, response.content.decode()[:2000]
    group = Group.objects.get(name="support")
    created = AuditLog.objects.get(action="group.create")
    assert (created.actor, created.target) == (demo.admin, "group/support")

    url = f"/admin/auth/group/{group.pk}/change/"
    data = form_data(staff.get(url).content.decode(), "group_form")
    response = staff.post(url, {**data, "permissions": [str(view_vm.pk)]})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(group.permissions.all()) == [view_vm]
    assert AuditLog.objects.get(action="group.update").detail == {"fields": ["permissions"]}

    response = staff.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Group.objects.filter(name="support").exists()
    assert AuditLog.objects.get(action="group.delete").target == "group/support"


# --- Tenants -----------------------------------------------------------------------------
def namespace_of(tenant: Tenant) -> TenantNamespace:
    cluster = KubernetesCluster.objects.create(
        name="k1",
        server="https://127.0.0.1:9",
        kubeconfig_encrypted=crypto.encrypt("clusters: []", context=crypto.KUBECONFIG),
    )
    return TenantNamespace.objects.create(
        tenant=tenant, cluster=cluster, name=tenant.namespace, ready=True
    )


def test_deleting_an_empty_tenant_in_admin_is_audited_and_the_entry_keeps_its_slug(demo, staff):
    page = staff.get(f"/admin/tenants/tenant/{demo.globex.pk}/delete/")
    assert page.status_code == 200
    response = staff.post(f"/admin/tenants/tenant/{demo.globex.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302

    assert not Tenant.objects.filter(slug="globex").exists()
    assert not Membership.objects.filter(user=demo.dave).exists()
    assert not Quota.objects.filter(tenant_id=demo.globex.pk).exists()
    entry = AuditLog.objects.get(action="tenant.delete")
    assert (entry.actor, entry.target, entry.tenant_slug) == (demo.admin, "globex", "globex")
    assert entry.tenant is None  # the tenant is gone; the entry stays
    assert entry.detail == {"name": "Globex", "members": ["dave"]}


def test_deleting_a_tenant_that_owns_a_namespace_is_refused_and_changes_nothing(demo, staff):
    namespace = namespace_of(demo.acme)
    response = staff.post(f"/admin/tenants/tenant/{demo.acme.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert response["Location"] == f"/admin/tenants/tenant/{demo.acme.pk}/change/"

    assert Tenant.objects.filter(pk=demo.acme.pk).exists()
    assert TenantNamespace.objects.filter(pk=namespace.pk).exists()
    assert Membership.objects.filter(tenant=demo.acme).count() == 3
    said = messages_of(response)
    assert any("acme still owns 1 tenant namespace" in m for m in said), said
    assert not any("deleted successfully" in m for m in said), said
    assert not AuditLog.objects.filter(action="tenant.delete").exists()


def test_bulk_deleting_tenants_deletes_only_the_empty_ones_each_audited(demo, staff):
    namespace_of(demo.acme)
    selected = [str(demo.acme.pk), str(demo.globex.pk)]
    confirm = staff.post(
        "/admin/tenants/tenant/", {"action": "delete_selected", "_selected_action": selected}
    )
    assert confirm.status_code == 200  # Django's confirmation page first
    response = staff.post(
        "/admin/tenants/tenant/",
        {"action": "delete_selected", "_selected_action": selected, "post": "yes"},
    )
    assert response.status_code == 302

    assert list(Tenant.objects.values_list("slug", flat=True)) == ["acme"]
    assert list(
        AuditLog.objects.filter(action="tenant.delete").values_list("target", flat=True)
    ) == ["globex"]
    said = messages_of(response)
    assert any("acme still owns" in m for m in said), said
    assert any("1 of 2 selected deleted" in m for m in said), said


def test_a_user_with_api_tokens_can_still_be_deleted_in_admin(demo, staff):
    """Tokens are never deleted on their own in admin; with their user
    (``user_delete``) they go."""
    services.token_create(user=demo.outsider, name="ci")
    response = staff.post(f"/admin/auth/user/{demo.outsider.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(username="erin").exists()
    assert not ApiToken.objects.filter(name="ci").exists()
    assert AuditLog.objects.get(action="user.delete").target == "user/erin"


# --- API tokens --------------------------------------------------------------------------
def test_api_tokens_are_revoked_in_admin_never_deleted(demo, staff):
    token, _key = services.token_create(user=demo.bob, name="ci")
    AuditLog.objects.all().delete()
    listing = staff.get("/admin/tenants/apitoken/").content.decode()
    assert 'value="delete_selected"' not in listing and 'value="revoke"' in listing
    assert staff.get(f"/admin/tenants/apitoken/{token.pk}/delete/").status_code == 403
    assert (
        staff.post(f"/admin/tenants/apitoken/{token.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    bulk = staff.post(
        "/admin/tenants/apitoken/",
        {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"},
    )
    assert bulk.status_code == 302  # "no action selected": nothing done
    assert ApiToken.objects.filter(pk=token.pk, revoked__isnull=True).exists()
    assert not AuditLog.objects.exists()

    response = staff.post(
        "/admin/tenants/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked is not None
    entry = AuditLog.objects.get(action="token.revoke")
    assert (entry.actor, entry.target) == (demo.admin, f"token/{token.key_id}")
    assert entry.detail == {"owner": "bob", "by": "admin"}


def test_revoking_a_token_revoked_meanwhile_keeps_its_time_and_audits_nothing(demo, staff):
    token, _key = services.token_create(user=demo.bob, name="ci")
    services.token_revoke(user=demo.bob, key_id=token.key_id)  # bob, after the list was shown
    revoked = ApiToken.objects.get(pk=token.pk).revoked
    assert not services.token_revoke_as_staff(actor=demo.admin, token=token)
    assert ApiToken.objects.get(pk=token.pk).revoked == revoked
    assert AuditLog.objects.filter(action="token.revoke").count() == 1  # bob's own
