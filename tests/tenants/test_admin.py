"""Django admin as the platform admin uses it: tenants with quota bars, quota edits and
members through the services (validated and audited), and a read-only audit log."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.db import transaction
from django.test import Client

from tenants import services
from tenants.choices import AuditOutcome, Role
from tenants.models import AuditLog, GroupMapping, Membership, Quota, Tenant

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class _FormParser(HTMLParser):
    """Collects what a browser would submit from the form with ``form_id``."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._select_options: list[tuple[str, bool]] = []
        self._option: dict | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id") == self.form_id:
            self.inside = True
        if not self.inside:
            return
        name = a.get("name")
        disabled = "disabled" in a
        if tag == "input" and name and not disabled:
            kind = a.get("type", "text")
            if kind in {"submit", "button", "image", "file", "reset"}:
                return
            if kind in {"checkbox", "radio"} and "checked" not in a:
                return
            self.fields.append((name, a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "select" and name and not disabled:
            self._select, self._select_options = name, []
        elif tag == "option" and self._select:
            self._option = {"value": a.get("value"), "selected": "selected" in a, "text": ""}
        elif tag == "textarea" and name and not disabled:
            self._textarea, self._text = name, ""

    def handle_data(self, data):
        if self._option is not None:
            self._option["text"] += data
        if self._textarea is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "form" and self.inside:
            self.inside = False
        elif tag == "option" and self._option is not None:
            value = self._option["value"]
            value = self._option["text"].strip() if value is None else value
            self._select_options.append((value, self._option["selected"]))
            self._option = None
        elif tag == "select" and self._select:
            chosen = [v for v, selected in self._select_options if selected]
            if not chosen and self._select_options:
                chosen = [self._select_options[0][0]]
            self.fields.extend((self._select, v) for v in chosen)
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None


def form_data(html: str, form_id: str = "tenant_form") -> dict[str, str]:
    """The submission of an unchanged form, minus the inline's empty template form."""
    parser = _FormParser(form_id)
    parser.feed(html)
    assert parser.fields, f"form #{form_id} not found"
    return {name: value for name, value in parser.fields if "__prefix__" not in name}


def text(html: str) -> str:
    """The page's text as a person reads it: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def change_url(tenant: Tenant) -> str:
    return f"/admin/tenants/tenant/{tenant.pk}/change/"


def reserve(tenant, ref: str, **amounts) -> None:
    with transaction.atomic():
        services.quota_reserve(tenant=tenant, ref=ref, **amounts)


def inline_index(data: dict, username_pk: int | None = None) -> int:
    """The index of the inline row holding ``username_pk`` (or of the empty extra row)."""
    total = int(data["memberships-TOTAL_FORMS"])
    for index in range(total):
        value = data.get(f"memberships-{index}-user", "")
        if (username_pk is None and not value) or value == str(username_pk):
            return index
    raise AssertionError(f"no inline row for {username_pk}")


# --- Tenant list and change form ------------------------------------------------------------
def test_the_tenant_list_shows_every_tenant_with_usage_bars(demo, staff):
    reserve(demo.acme, "vm:a", cpu=12, vms=19)
    response = staff.get("/admin/tenants/tenant/")
    assert response.status_code == 200
    page = text(response.content.decode())
    assert "ACME Corporation" in page and "Globex" in page
    assert "19 / 20" in page  # acme's VMs
    assert "12 / 16" in page  # acme's CPU
    assert "0 / 20" in page  # globex's VMs
    html = response.content.decode()
    assert "width:95%" in html and "width:75%" in html and "width:0%" in html


def test_the_tenant_change_form_shows_current_usage_and_the_limits(demo, staff):
    reserve(demo.acme, "vm:a", cpu=2, memory=4096, storage=40, vms=1)
    response = staff.get(change_url(demo.acme))
    assert response.status_code == 200
    page = text(response.content.decode())
    assert "4096 / 32768 MiB" in page
    assert "40 / 200 GiB" in page
    assert "1 / 20 VMs" in page
    data = form_data(response.content.decode())
    assert data["quota_vms"] == "20"
    assert data["quota_memory"] == "32768"
    assert "slug" not in data  # the slug names the namespace and cannot change


def test_saving_a_new_limit_in_admin_changes_the_quota_the_tenant_sees(demo, staff):
    data = form_data(staff.get(change_url(demo.acme)).content.decode())
    data["quota_vms"] = "7"
    data["description"] = "Rockets"
    response = staff.post(change_url(demo.acme), data)
    assert response.status_code == 302, text(response.content.decode())[:2000]
    assert response.url == "/admin/tenants/tenant/"

    assert Quota.objects.get(tenant=demo.acme).vms == 7
    assert Tenant.objects.get(pk=demo.acme.pk).description == "Rockets"
    row = AuditLog.objects.get(action="quota.set")
    assert (row.actor, row.tenant, row.outcome) == (demo.admin, demo.acme, AuditOutcome.SUCCESS)
    assert row.source_ip == "127.0.0.1"
    assert row.detail["from"]["vms"] == "20" and row.detail["to"]["vms"] == "7"

    alice = Client()
    alice.force_login(demo.alice)
    overview = alice.get("/t/acme/").content.decode()
    vms = re.search(r'data-testid="quota-vms">(.*?)</span>\s*</div>', overview, re.S)
    assert vms, "the overview has no VM quota bar"
    assert text(vms.group(1)).strip() == "0 / 7 VMs"


def test_lowering_a_limit_below_use_in_admin_warns_and_keeps_the_change(demo, staff):
    reserve(demo.acme, "vm:a", cpu=4, vms=3)
    data = form_data(staff.get(change_url(demo.acme)).content.decode())
    data["quota_vms"] = "2"
    data["quota_cpu"] = "1"
    response = staff.post(change_url(demo.acme), data, follow=True)
    assert response.status_code == 200
    warnings = [m for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert len(warnings) == 1
    assert "below current use for cpu, vms" in str(warnings[0])
    assert "below current use" in response.content.decode()
    quota = Quota.objects.get(tenant=demo.acme)
    assert (quota.vms, quota.cpu, quota.used_vms) == (2, 1, 3)


def test_a_negative_limit_in_admin_is_a_form_error_and_changes_nothing(demo, staff):
    data = form_data(staff.get(change_url(demo.acme)).content.decode())
    data["quota_vms"] = "-1"
    response = staff.post(change_url(demo.acme), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["quota_vms"]
    assert Quota.objects.get(tenant=demo.acme).vms == 20
    assert not AuditLog.objects.filter(action="quota.set").exists()


def test_a_tenant_form_opened_before_a_quota_raise_and_2fa_saves_only_its_own_edit(
    demo, staff, api, django_user_model
):
    url = change_url(demo.acme)
    stale = form_data(staff.get(url).content.decode())
    assert (stale["quota_vms"], stale["quota_cpu"]) == ("20", "16.000")
    assert "require_2fa" not in stale

    # After the page was opened: another staff member raises the quota through the API
    # and requires 2FA on the tenant's page.
    ops = django_user_model.objects.create_superuser("ops", "ops@example.com", "pw")
    raised = api(ops).patch(
        "/api/v1/tenants/acme/quota/", {"spec": {"hard": {"vms": 50, "cpu": 32}}}, format="json"
    )
    assert raised.status_code == 200, raised.content
    other = Client()
    other.force_login(ops)
    theirs = form_data(other.get(url).content.decode())
    theirs["require_2fa"] = "on"
    assert other.post(url, theirs).status_code == 302

    # The first page, with only the description edited.
    stale["description"] = "Rockets"
    response = staff.post(url, stale)
    assert response.status_code == 302, text(response.content.decode())[:2000]

    tenant, quota = Tenant.objects.get(pk=demo.acme.pk), Quota.objects.get(tenant=demo.acme)
    assert tenant.description == "Rockets"
    assert tenant.require_2fa  # the other admin's
    assert (quota.vms, quota.cpu) == (50, 32)  # the API's
    mine = AuditLog.objects.filter(actor=demo.admin).values_list("action", "detail")
    assert list(mine) == [("tenant.update", {"fields": ["description"]})]
    theirs = AuditLog.objects.filter(actor=ops).order_by("pk").values_list("action", flat=True)
    assert list(theirs) == ["quota.set", "tenant.require_2fa"]


# --- Adding a tenant ------------------------------------------------------------------------
def test_adding_a_tenant_in_admin_creates_its_quota_from_the_defaults_and_audits(demo, staff):
    data = form_data(staff.get("/admin/tenants/tenant/add/").content.decode())
    for resource, limit in settings.ISOTOPE_DEFAULT_QUOTA.items():
        assert data[f"quota_{resource}"] == str(limit)  # the form starts from the defaults
    data.update(slug="initech", name="Initech")
    response = staff.post("/admin/tenants/tenant/add/", data)
    assert response.status_code == 302, text(response.content.decode())[:2000]

    tenant = Tenant.objects.get(slug="initech")
    quota = Quota.objects.get(tenant=tenant)
    for resource, limit in settings.ISOTOPE_DEFAULT_QUOTA.items():
        assert quota.limit(resource) == limit
    row = AuditLog.objects.get(action="tenant.create", tenant=tenant)
    assert (row.actor, row.source_ip) == (demo.admin, "127.0.0.1")
    assert staff.get(change_url(tenant)).status_code == 200


def test_adding_a_tenant_with_its_first_admin_in_one_go(demo, staff):
    data = form_data(staff.get("/admin/tenants/tenant/add/").content.decode())
    index = inline_index(data)
    data.update(slug="initech", name="Initech", quota_pods="5")
    data[f"memberships-{index}-user"] = str(demo.outsider.pk)
    data[f"memberships-{index}-role"] = Role.ADMIN
    response = staff.post("/admin/tenants/tenant/add/", data)
    assert response.status_code == 302, text(response.content.decode())[:2000]

    tenant = Tenant.objects.get(slug="initech")
    assert Quota.objects.get(tenant=tenant).pods == 5
    assert Membership.objects.get(tenant=tenant).user == demo.outsider
    assert AuditLog.objects.filter(action="member.add", tenant=tenant, target="erin").exists()


@pytest.mark.parametrize("slug", ["Initech", "-x", "a_b", "acme"])
def test_a_bad_or_taken_slug_in_admin_is_a_form_error_and_creates_nothing(demo, staff, slug):
    data = form_data(staff.get("/admin/tenants/tenant/add/").content.decode())
    data.update(slug=slug, name="Whatever")
    tenants, audits = Tenant.objects.count(), AuditLog.objects.count()
    response = staff.post("/admin/tenants/tenant/add/", data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"]
    assert (Tenant.objects.count(), AuditLog.objects.count()) == (tenants, audits)


# --- Members through the inline -------------------------------------------------------------
def test_adding_a_member_through_the_inline_is_audited(demo, staff):
    data = form_data(staff.get(change_url(demo.acme)).content.decode())
    index = inline_index(data)
    data[f"memberships-{index}-user"] = str(demo.outsider.pk)
    data[f"memberships-{index}-role"] = Role.OPERATOR
    response = staff.post(change_url(demo.acme), data)
    assert response.status_code == 302, text(response.content.decode())[:2000]

    assert Membership.objects.get(tenant=demo.acme, user=demo.outsider).role == Role.OPERATOR
    row = AuditLog.objects.get(action="member.add", target="erin")
    assert (row.actor, row.tenant) == (demo.admin, demo.acme)
    assert row.detail == {"role": "operator", "source": "local"} and row.source_ip == "127.0.0.1"
    assert Quota.objects.get(tenant=demo.acme).vms == 20  # the unchanged quota stays
    history = LogEntry.objects.filter(object_id=str(demo.acme.pk)).latest("action_time")
    assert "Added membership" in history.get_change_message()


def test_changing_and_removing_members_through_the_inline_is_audited(demo, staff):
    data = form_data(staff.get(change_url(demo.acme)).content.decode())
    data[f"memberships-{inline_index(data, demo.carol.pk)}-role"] = Role.ADMIN
    data[f"memberships-{inline_index(data, demo.bob.pk)}-DELETE"] = "on"
    response = staff.post(change_url(demo.acme), data)
    assert response.status_code == 302, text(response.content.decode())[:2000]

    roles = dict(Membership.objects.filter(tenant=demo.acme).values_list("user__username", "role"))
    assert roles == {"alice": "admin", "carol": "admin"}
    assert AuditLog.objects.get(action="member.set_role").target == "carol"
    assert AuditLog.objects.get(action="member.remove").target == "bob"


def test_a_tenant_page_opened_before_a_role_change_leaves_that_role_alone(demo, staff):
    url = change_url(demo.acme)
    stale = form_data(staff.get(url).content.decode())
    assert stale[f"memberships-{inline_index(stale, demo.carol.pk)}-role"] == Role.VIEWER
    # Another admin makes carol an operator after the page was opened.
    services.membership_set_role(
        actor=demo.alice, tenant=demo.acme, user=demo.carol, role="operator"
    )

    stale["description"] = "Rockets"
    response = staff.post(url, stale)
    assert response.status_code == 302, text(response.content.decode())[:2000]

    assert Membership.objects.get(tenant=demo.acme, user=demo.carol).role == Role.OPERATOR
    assert Tenant.objects.get(pk=demo.acme.pk).description == "Rockets"
    assert not AuditLog.objects.filter(action="member.set_role", actor=demo.admin).exists()


def test_removing_the_last_admin_through_the_inline_is_refused_with_a_message(demo, staff):
    data = form_data(staff.get(change_url(demo.acme)).content.decode())
    data[f"memberships-{inline_index(data, demo.alice.pk)}-DELETE"] = "on"
    response = staff.post(change_url(demo.acme), data, follow=True)
    errors = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "error"]
    assert errors == ["A tenant keeps at least one admin."]
    assert Membership.objects.get(tenant=demo.acme, user=demo.alice).role == Role.ADMIN
    assert not AuditLog.objects.filter(action="member.remove").exists()


# --- Audit log ------------------------------------------------------------------------------
def test_the_audit_log_in_admin_can_be_read_but_never_added_changed_or_deleted(demo, staff):
    row = AuditLog.objects.filter(action="tenant.create").first()
    listing = staff.get("/admin/tenants/auditlog/")
    assert listing.status_code == 200
    assert "tenant.create" in listing.content.decode()
    assert "/admin/tenants/auditlog/add/" not in listing.content.decode()
    assert "delete_selected" not in listing.content.decode()

    assert staff.get("/admin/tenants/auditlog/add/").status_code == 403
    assert staff.post("/admin/tenants/auditlog/add/", {"action": "forged"}).status_code == 403

    detail = staff.get(f"/admin/tenants/auditlog/{row.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    edited = staff.post(f"/admin/tenants/auditlog/{row.pk}/change/", {"action": "forged"})
    assert edited.status_code == 403

    assert staff.get(f"/admin/tenants/auditlog/{row.pk}/delete/").status_code == 403
    deleted = staff.post(f"/admin/tenants/auditlog/{row.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 403
    bulk = staff.post(
        "/admin/tenants/auditlog/",
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert bulk.status_code in {200, 302}
    assert AuditLog.objects.filter(pk=row.pk, action="tenant.create").exists()


# --- Single sign-on group mappings ----------------------------------------------------------
MAPPINGS = "/admin/tenants/groupmapping/"


def test_group_mappings_are_added_changed_and_deleted_in_admin_and_audited(demo, staff):
    data = form_data(staff.get(f"{MAPPINGS}add/").content.decode(), "groupmapping_form")
    data.update(group=" acme-operators ", tenant=str(demo.acme.pk), role=Role.OPERATOR)
    response = staff.post(f"{MAPPINGS}add/", data)
    assert response.status_code == 302, text(response.content.decode())[:2000]
    mapping = GroupMapping.objects.get()
    assert (mapping.group, mapping.tenant, mapping.role) == (
        "acme-operators",
        demo.acme,
        "operator",
    )
    added = AuditLog.objects.get(action="sso.mapping.add")
    assert (added.actor, added.tenant, added.target) == (
        demo.admin,
        demo.acme,
        "group/acme-operators",
    )
    assert added.detail == {"group": "acme-operators", "role": "operator"}

    url = f"{MAPPINGS}{mapping.pk}/change/"
    data = form_data(staff.get(url).content.decode(), "groupmapping_form")
    data["role"] = Role.ADMIN
    assert staff.post(url, data).status_code == 302
    changed = AuditLog.objects.get(action="sso.mapping.change")
    assert changed.detail == {"group": "acme-operators", "role": "admin"}

    response = staff.post(f"{MAPPINGS}{mapping.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not GroupMapping.objects.exists()
    deleted = AuditLog.objects.get(action="sso.mapping.delete")
    assert (deleted.tenant, deleted.target) == (demo.acme, "group/acme-operators")


def test_a_duplicate_or_nameless_group_mapping_is_refused_in_admin_and_changes_nothing(demo, staff):
    GroupMapping.objects.create(group="acme-viewers", tenant=demo.acme, role=Role.VIEWER)
    for group in ("acme-viewers", "   "):
        data = form_data(staff.get(f"{MAPPINGS}add/").content.decode(), "groupmapping_form")
        data.update(group=group, tenant=str(demo.acme.pk), role=Role.ADMIN)
        response = staff.post(f"{MAPPINGS}add/", data)
        assert response.status_code == 200
        assert "errornote" in response.content.decode()
    assert list(GroupMapping.objects.values_list("group", "role")) == [("acme-viewers", "viewer")]
    assert not AuditLog.objects.filter(action__startswith="sso.mapping").exists()


def test_tenant_admins_cannot_edit_group_mappings(demo):
    client = Client()
    client.force_login(demo.alice)  # acme's admin, not platform staff
    assert client.get(f"{MAPPINGS}add/").status_code == 302  # to the admin sign-in
    assert not GroupMapping.objects.exists()
