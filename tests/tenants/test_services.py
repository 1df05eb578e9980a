"""Tenant and membership services: validation, last-admin protection, and audit rows."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from portal import signals
from portal.exceptions import Conflict, NotFound, ValidationError
from tenants import services
from tenants.choices import AuditOutcome, Role
from tenants.models import AuditLog, Membership, Quota, Tenant
from tests.conftest import postgres_only

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def counts() -> tuple[int, int, int, int]:
    return (
        Tenant.objects.count(),
        Quota.objects.count(),
        Membership.objects.count(),
        AuditLog.objects.count(),
    )


def roles(tenant) -> dict[str, str]:
    return dict(Membership.objects.filter(tenant=tenant).values_list("user__username", "role"))


# --- tenant_create ------------------------------------------------------------------------
@pytest.mark.django_db
def test_creating_a_tenant_gives_it_the_default_quota_and_an_audit_row(demo):
    tenant = services.tenant_create(actor=demo.admin, slug="initech", name="Initech")

    assert tenant.namespace == "isotope-initech"
    quota = Quota.objects.get(tenant=tenant)
    for resource, limit in settings.ISOTOPE_DEFAULT_QUOTA.items():
        assert quota.limit(resource) == limit
        assert quota.used(resource) == 0
    row = AuditLog.objects.get(action="tenant.create", tenant=tenant)
    assert (row.actor, row.actor_name, row.target) == (demo.admin, "admin", "initech")
    assert row.outcome == AuditOutcome.SUCCESS


@pytest.mark.django_db
def test_a_tenant_can_start_with_its_own_quota_and_defaults_fill_the_rest(demo):
    tenant = services.tenant_create(actor=demo.admin, slug="initech", quota={"vms": 3})
    quota = Quota.objects.get(tenant=tenant)
    assert quota.vms == 3
    assert quota.pods == settings.ISOTOPE_DEFAULT_QUOTA["pods"]
    assert tenant.name == "initech"  # the slug stands in for a missing display name


@pytest.mark.django_db
def test_a_slug_of_exactly_forty_characters_is_accepted(demo):
    slug = "a" * 39 + "1"
    assert services.tenant_create(actor=None, slug=slug).slug == slug


@pytest.mark.django_db
@pytest.mark.parametrize(
    "slug",
    ["Acme", "-x", "x-", "a_b", "a" * 41, "", "a b", "ac.me", "zürich", "acme/../globex"],
)
def test_a_bad_tenant_slug_is_refused_with_a_field_error_and_creates_nothing(demo, slug):
    before = counts()
    with pytest.raises(ValidationError) as raised:
        services.tenant_create(actor=demo.admin, slug=slug)
    assert raised.value.errors["slug"]
    assert counts() == before


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["acme", " acme "])
def test_a_duplicate_tenant_slug_is_a_conflict_and_leaves_the_original_alone(demo, slug):
    before = counts()
    with pytest.raises(Conflict) as raised:
        services.tenant_create(actor=demo.admin, slug=slug, name="Impostor")
    assert raised.value.errors == {"slug": ["Taken."]}
    assert counts() == before
    assert Tenant.objects.get(slug="acme").name == "ACME Corporation"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("quota", "field"),
    [
        ({"vms": -1}, "vms"),
        ({"cpu": "lots"}, "cpu"),
        ({"gpus": 1}, "gpus"),
        ({"pods": 1.5}, "pods"),
    ],
)
def test_a_bad_initial_quota_refuses_the_whole_tenant(demo, quota, field):
    before = counts()
    with pytest.raises(ValidationError) as raised:
        services.tenant_create(actor=demo.admin, slug="initech", quota=quota)
    assert field in raised.value.errors
    assert counts() == before
    assert not Tenant.objects.filter(slug="initech").exists()


# --- membership_add -----------------------------------------------------------------------
@pytest.mark.django_db
def test_adding_a_member_gives_the_role_and_records_who_added_whom(demo):
    membership = services.membership_add(
        actor=demo.alice, tenant=demo.acme, user="erin", role=Role.OPERATOR
    )
    assert (membership.user, membership.role) == (demo.outsider, Role.OPERATOR)
    row = AuditLog.objects.get(action="member.add", target="erin")
    assert (row.actor, row.tenant, row.outcome) == (demo.alice, demo.acme, AuditOutcome.SUCCESS)
    assert row.detail == {"role": "operator", "source": "local"}


@pytest.mark.django_db
def test_a_member_added_without_a_role_is_a_viewer(demo):
    assert services.membership_add(actor=demo.alice, tenant=demo.acme, user="erin").role == "viewer"


@pytest.mark.django_db
def test_adding_an_existing_member_again_is_a_conflict_and_keeps_the_old_role(demo):
    before = counts()
    with pytest.raises(Conflict) as raised:
        services.membership_add(actor=demo.alice, tenant=demo.acme, user="carol", role=Role.ADMIN)
    assert raised.value.errors == {"user": ["Already a member."]}
    assert counts() == before
    assert roles(demo.acme)["carol"] == Role.VIEWER


@pytest.mark.django_db
def test_the_same_user_can_be_a_member_of_two_tenants(demo):
    services.membership_add(actor=demo.dave, tenant=demo.globex, user="carol", role=Role.ADMIN)
    assert roles(demo.acme)["carol"] == Role.VIEWER
    assert roles(demo.globex)["carol"] == Role.ADMIN


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("user", "role", "field"),
    [("erin", "owner", "role"), ("erin", "", "role"), ("nobody", Role.VIEWER, "user")],
)
def test_adding_an_unknown_user_or_role_is_a_field_error_and_adds_nothing(demo, user, role, field):
    before = counts()
    with pytest.raises(ValidationError) as raised:
        services.membership_add(actor=demo.alice, tenant=demo.acme, user=user, role=role)
    assert raised.value.errors[field]
    assert counts() == before


# --- membership_set_role ------------------------------------------------------------------
@pytest.mark.django_db
def test_changing_a_role_is_audited_with_the_old_and_new_role(demo):
    services.membership_set_role(actor=demo.alice, tenant=demo.acme, user="carol", role="admin")
    assert roles(demo.acme)["carol"] == Role.ADMIN
    row = AuditLog.objects.get(action="member.set_role")
    assert (row.actor, row.tenant, row.target) == (demo.alice, demo.acme, "carol")
    assert row.detail == {"from": "viewer", "to": "admin", "source": "local"}


@pytest.mark.django_db
def test_the_only_admin_cannot_be_demoted(demo):
    """Demoting the last admin used to succeed, leaving a tenant nobody could manage."""
    before = counts()
    with pytest.raises(Conflict) as raised:
        services.membership_set_role(
            actor=demo.alice, tenant=demo.acme, user="alice", role=Role.OPERATOR
        )
    assert raised.value.errors == {"role": ["Last admin."]}
    assert roles(demo.acme)["alice"] == Role.ADMIN
    assert counts() == before


@pytest.mark.django_db
def test_an_admin_can_step_down_once_another_admin_exists(demo):
    services.membership_set_role(actor=demo.alice, tenant=demo.acme, user="bob", role="admin")
    services.membership_set_role(actor=demo.alice, tenant=demo.acme, user="alice", role="viewer")
    assert roles(demo.acme) == {"alice": "viewer", "bob": "admin", "carol": "viewer"}


@pytest.mark.django_db
def test_the_only_admin_keeping_the_admin_role_is_not_a_demotion(demo):
    services.membership_set_role(actor=demo.alice, tenant=demo.acme, user="alice", role="admin")
    assert roles(demo.acme)["alice"] == Role.ADMIN


@pytest.mark.django_db
def test_another_tenants_admin_does_not_count_as_an_admin_here(demo):
    # dave is an admin, but of globex: acme would still be left without one.
    with pytest.raises(Conflict):
        services.membership_set_role(
            actor=demo.admin, tenant=demo.acme, user="alice", role=Role.VIEWER
        )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("user", "role", "error"),
    [("erin", "admin", NotFound), ("dave", "admin", NotFound), ("carol", "root", ValidationError)],
)
def test_changing_the_role_of_a_non_member_or_to_an_unknown_role_changes_nothing(
    demo, user, role, error
):
    before = (counts(), roles(demo.acme), roles(demo.globex))
    with pytest.raises(error):
        services.membership_set_role(actor=demo.alice, tenant=demo.acme, user=user, role=role)
    assert (counts(), roles(demo.acme), roles(demo.globex)) == before


# --- membership_remove --------------------------------------------------------------------
@pytest.mark.django_db
def test_removing_a_member_deletes_the_membership_and_is_audited(demo):
    services.membership_remove(actor=demo.alice, tenant=demo.acme, user="bob")
    assert "bob" not in roles(demo.acme)
    row = AuditLog.objects.get(action="member.remove")
    assert (row.actor, row.tenant, row.target) == (demo.alice, demo.acme, "bob")
    assert get_user_model().objects.filter(username="bob").exists()  # the account stays


@pytest.mark.django_db
def test_the_last_admin_cannot_be_removed(demo):
    before = counts()
    with pytest.raises(Conflict) as raised:
        services.membership_remove(actor=demo.admin, tenant=demo.acme, user="alice")
    assert raised.value.errors == {"user": ["Last admin."]}
    assert roles(demo.acme)["alice"] == Role.ADMIN
    assert counts() == before


@pytest.mark.django_db
def test_an_admin_can_be_removed_once_another_admin_exists(demo):
    services.membership_set_role(actor=demo.alice, tenant=demo.acme, user="carol", role="admin")
    services.membership_remove(actor=demo.carol, tenant=demo.acme, user="alice")
    assert roles(demo.acme) == {"bob": "operator", "carol": "admin"}


@pytest.mark.django_db
@pytest.mark.parametrize("user", ["erin", "dave"])
def test_removing_a_non_member_is_not_found_and_changes_nothing(demo, user):
    before = (counts(), roles(demo.globex))
    with pytest.raises(NotFound):
        services.membership_remove(actor=demo.alice, tenant=demo.acme, user=user)
    assert (counts(), roles(demo.globex)) == before


# --- Side effects -----------------------------------------------------------------------
@pytest.mark.django_db
def test_a_service_call_without_a_user_is_audited_as_the_system(demo):
    services.membership_add(actor=None, tenant=demo.acme, user="erin")
    row = AuditLog.objects.get(action="member.add", target="erin")
    assert (row.actor, row.actor_name) == (None, "system")
    assert row.source_ip is None  # no request, no address


@pytest.mark.django_db
def test_live_sessions_hear_about_a_role_change_or_removal_only_after_commit(
    demo, django_capture_on_commit_callbacks
):
    heard: list[tuple[str, str]] = []

    def receiver(sender, tenant, user, **kwargs):
        heard.append((tenant.slug, user.username))

    signals.membership_changed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            services.membership_set_role(
                actor=demo.alice, tenant=demo.acme, user="carol", role="operator"
            )
            services.membership_remove(actor=demo.alice, tenant=demo.acme, user="bob")
            assert heard == []  # nothing is sent before the transaction commits
        assert len(callbacks) == 2
        assert heard == [("acme", "carol"), ("acme", "bob")]

        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            with pytest.raises(Conflict):
                services.membership_remove(actor=demo.alice, tenant=demo.acme, user="alice")
        assert callbacks == []
    finally:
        signals.membership_changed.disconnect(receiver)


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(demo):
    """The second demotion waits for the first to commit, then sees it is the last admin."""
    postgres_only()
    services.membership_set_role(actor=None, tenant=demo.acme, user="bob", role=Role.ADMIN)
    first_done, release_first = threading.Event(), threading.Event()
    outcomes: dict[str, str] = {}

    def demote(username: str, hold: bool) -> None:
        try:
            with transaction.atomic():
                services.membership_set_role(
                    actor=None, tenant=demo.acme, user=username, role=Role.VIEWER
                )
                if hold:  # keep the first transaction open while the second one runs
                    first_done.set()
                    release_first.wait(10)
            outcomes[username] = "demoted"
        except Conflict:
            outcomes[username] = "refused"
        finally:
            first_done.set()
            connection.close()

    first = threading.Thread(target=demote, args=("alice", True))
    second = threading.Thread(target=demote, args=("bob", False))
    first.start()
    assert first_done.wait(10)
    second.start()
    second.join(timeout=1)  # it must wait for the first transaction, not decide alone
    release_first.set()
    first.join(timeout=10)
    second.join(timeout=10)

    assert outcomes == {"alice": "demoted", "bob": "refused"}
    assert roles(demo.acme) == {"alice": "viewer", "bob": "admin", "carol": "viewer"}
