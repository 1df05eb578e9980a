"""The theme preference: one service writes it (audited, validated), the switch view
never answers 500 and only redirects within the portal."""

from __future__ import annotations

import pytest

from portal.exceptions import ValidationError
from tenants import services
from tenants.models import AuditLog, UserPreference

pytestmark = pytest.mark.django_db


def test_setting_a_theme_stores_it_and_audits_the_change(demo):
    services.preference_set_theme(user=demo.carol, theme="dark")
    assert UserPreference.objects.get(user=demo.carol).theme == "dark"
    entry = AuditLog.objects.filter(action="preference.set").latest("pk")
    assert entry.detail == {"theme": "dark", "was": "auto"}


def test_an_unknown_theme_is_refused_and_changes_nothing(demo):
    services.preference_set_theme(user=demo.carol, theme="light")
    with pytest.raises(ValidationError) as error:
        services.preference_set_theme(user=demo.carol, theme="solarized")
    assert "auto, light, dark" in str(error.value.errors)
    assert UserPreference.objects.get(user=demo.carol).theme == "light"


def test_the_switch_goes_back_to_the_page_and_renders_the_theme(client, demo):
    client.force_login(demo.carol)
    response = client.post("/profile/theme/", {"theme": "dark", "next": "/t/acme/vms/"})
    assert response.status_code == 302 and response["Location"] == "/t/acme/vms/"
    page = client.get("/t/acme/vms/").content.decode()
    assert 'data-bs-theme="dark" data-iso-theme="dark"' in page


def test_a_bad_theme_or_a_foreign_next_is_a_message_not_a_500(client, demo):
    client.force_login(demo.carol)
    response = client.post(
        "/profile/theme/", {"theme": "<script>", "next": "https://evil.example/"}, follow=True
    )
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/profile/"
    assert "Unknown theme" in response.content.decode()
    assert not UserPreference.objects.filter(user=demo.carol, theme="<script>").exists()
    assert client.get("/profile/theme/").status_code == 405


def test_signed_out_visitors_cannot_set_a_theme(client, demo):
    response = client.post("/profile/theme/", {"theme": "dark"})
    assert response.status_code == 302 and "/login/" in response["Location"]
