"""A user's confirmation preferences: set from the VM pages' "Don't ask again" or the
profile page, per user, audited; deleting always asks."""

from __future__ import annotations

import pytest
from django.test import Client

from portal.exceptions import ValidationError
from tenants import selectors, services
from tenants.choices import Confirmation
from tenants.models import AuditLog, UserPreference

pytestmark = pytest.mark.unit


def test_turning_a_confirmation_off_and_on_is_per_user_and_audited(demo):
    services.preference_set_confirmation(
        user=demo.bob, confirmation=Confirmation.VM_REBOOT, ask=False
    )
    assert selectors.confirmations_skipped(demo.bob) == {"vm.reboot"}
    assert selectors.confirmations_skipped(demo.alice) == frozenset()
    row = AuditLog.objects.get(action="preference.set")
    assert (row.actor, row.detail) == (demo.bob, {"confirmation": "vm.reboot", "ask": False})

    # Asking for what is already so changes and audits nothing.
    services.preference_set_confirmation(
        user=demo.bob, confirmation=Confirmation.VM_REBOOT, ask=False
    )
    assert AuditLog.objects.filter(action="preference.set").count() == 1
    services.preference_set_confirmation(
        user=demo.bob, confirmation=Confirmation.VM_REBOOT, ask=True
    )
    assert selectors.confirmations_skipped(demo.bob) == frozenset()


def test_deleting_cannot_be_told_not_to_ask(demo):
    with pytest.raises(ValidationError) as refused:
        services.preference_set_confirmation(user=demo.bob, confirmation="vm.delete", ask=False)
    assert "confirmation" in refused.value.errors
    assert not UserPreference.objects.exists()


def test_the_profile_form_sets_the_signed_in_user_s_switches_only(demo):
    client = Client()
    assert client.post("/profile/confirmations/", {"ask": []}).status_code == 302
    assert not UserPreference.objects.exists()  # anonymous: sent to sign in

    client.force_login(demo.carol)
    response = client.post("/profile/confirmations/", {"ask": ["vm.reboot"]})
    assert response.status_code == 302 and response.url == "/profile/"
    assert selectors.confirmations_skipped(demo.carol) == {"vm.force-stop"}
    assert selectors.confirmations_skipped(demo.bob) == frozenset()
    html = client.get("/profile/").content.decode()
    assert 'value="vm.reboot" id="ask-vmreboot" checked' in html
    assert 'value="vm.force-stop" id="ask-vmforce-stop" >' in html
