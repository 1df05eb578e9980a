"""VM pool pages: list, create form with field errors, detail with members, the scale
control, the confirmed delete and the autoscaler form, each by role; other tenants."""

from __future__ import annotations

import pytest
from django.test import Client

from compute.models import Autoscaler, VMPool
from compute.services import autoscalers as autoscaler_services
from compute.services import pools as pool_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog
from tests.compute.test_api_pools import make_pool
from tests.page_forms import page_form_data

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

LIST = "/t/acme/vmpools/"
NEW = "/t/acme/vmpools/new/"


@pytest.fixture
def world(demo, make_host, tiny_image):
    demo.host = make_host("node-a")
    return demo


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


FORM = {
    "name": "web",
    "replicas": "2",
    "image": "",
    "vcpus": "1",
    "memory_mib": "256",
    "disk_gib": "0",
    "restart_policy": "OnFailure",
    "warm_mode": "stopped",
    "strategy": "rolling",
}
SCALER_FORM = {
    "min_replicas": "1",
    "max_replicas": "4",
    "metric": "cpu",
    "target": "50",
    "scale_down_window_seconds": "300",
    "scale_up_pods": "4",
    "scale_up_percent": "100",
    "scale_down_percent": "100",
}


def test_create_form_makes_a_pool_and_its_page_lists_the_members(world, tiny_image):
    client = client_for(world.bob)
    page = client.get(NEW)
    assert page.status_code == 200 and b"vms" in page.content  # quota left is shown
    response = client.post(NEW, {**FORM, "image": str(tiny_image.pk)})
    assert response.status_code == 302 and response["Location"] == "/t/acme/vmpools/web/"
    pool = pool_services.pool_reconcile(VMPool.objects.get(name="web").pk)
    detail = client.get("/t/acme/vmpools/web/").content.decode()
    for member in ("web-0", "web-1"):
        assert f'data-member="{member}"' in detail
    assert 'data-testid="pool-scale"' in detail and 'data-testid="autoscaler-form"' in detail
    assert pool.created_by == world.bob
    filtered = client.get("/t/acme/vms/?label=isotope.dev/pool=web")
    assert filtered.status_code == 200 and b'data-live-name="web-1"' in filtered.content
    member = client.get("/t/acme/vms/web-0/").content.decode()
    assert 'data-testid="vm-pool"' in member and 'href="/t/acme/vmpools/web/"' in member
    listing = client.get(LIST).content.decode()
    assert 'data-pool="web"' in listing and "0/2" in listing


def test_bad_input_comes_back_on_its_fields_and_creates_nothing(world, tiny_image):
    response = client_for(world.bob).post(
        NEW, {**FORM, "image": str(tiny_image.pk), "name": "Web!", "replicas": "500"}
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert 'data-testid="error-name"' in body and 'data-testid="error-replicas"' in body
    assert not VMPool.objects.exists()


def test_scale_delete_and_autoscaler_by_an_operator(world):
    pool = make_pool(world)
    client = client_for(world.bob)
    response = client.post("/t/acme/vmpools/web/scale/", {"replicas": "3"})
    assert response.status_code == 302
    assert VMPool.objects.get(pk=pool.pk).replicas == 3
    client.post("/t/acme/vmpools/web/scale/", {"replicas": "lots"})
    assert VMPool.objects.get(pk=pool.pk).replicas == 3
    assert client.post("/t/acme/vmpools/web/autoscaler/", SCALER_FORM).status_code == 302
    assert Autoscaler.objects.get(pool=pool).max_replicas == 4
    bad = client.post("/t/acme/vmpools/web/autoscaler/", {**SCALER_FORM, "min_replicas": "9"})
    assert bad.status_code == 400 and b'data-testid="error-min_replicas"' in bad.content
    client.post("/t/acme/vmpools/web/autoscaler/", {**SCALER_FORM, "max_replicas": "6"})
    assert Autoscaler.objects.get(pool=pool).max_replicas == 6
    detail = client.get("/t/acme/vmpools/web/").content.decode()
    assert 'data-testid="autoscaler-decisions"' in detail and "Save the autoscaler" in detail
    client.post("/t/acme/vmpools/web/autoscaler/", {"remove": "1"})
    assert not Autoscaler.objects.exists()
    # Delete asks first (a page without JavaScript), then deletes.
    ask = client.post("/t/acme/vmpools/web/delete/")
    assert ask.status_code == 200 and b'data-testid="pool-confirm-page"' in ask.content
    assert not VMPool.objects.get(pk=pool.pk).deleting
    done = client.post("/t/acme/vmpools/web/delete/", {"confirm": "yes"})
    assert done.status_code == 302 and done["Location"] == LIST
    assert VMPool.objects.get(pk=pool.pk).deleting


@pytest.mark.parametrize(
    "who, read, form, write",
    [
        ("alice", 200, 200, 302),
        ("bob", 200, 200, 302),
        ("carol", 200, 403, 403),
        ("dave", 404, 404, 404),
        ("outsider", 404, 404, 404),
    ],
)
def test_pages_by_role(world, who, read, form, write):
    pool = make_pool(world)
    autoscaler_services.autoscaler_create(
        actor=None, tenant=world.acme, pool=pool, max_replicas=3, target=50
    )
    client = client_for(getattr(world, who))
    assert client.get(LIST).status_code == read
    assert client.get("/t/acme/vmpools/web/").status_code == read
    assert client.get(NEW).status_code == form
    got = (
        client.post("/t/acme/vmpools/web/scale/", {"replicas": "4"}).status_code,
        client.post("/t/acme/vmpools/web/update/", {"paused": "1"}).status_code,
        client.post("/t/acme/vmpools/web/autoscaler/", SCALER_FORM).status_code,
        client.post("/t/acme/vmpools/web/delete/", {"confirm": "yes"}).status_code,
    )
    assert got == (write, write, write, write)
    pool.refresh_from_db()
    assert pool.paused == (write == 302)
    if write == 302:
        assert pool.replicas == 4 and pool.deleting
        assert Autoscaler.objects.get(pool=pool).max_replicas == 4
    else:
        assert pool.replicas == 2 and not pool.deleting
        assert Autoscaler.objects.get(pool=pool).max_replicas == 3
    if who == "carol":
        page = client.get("/t/acme/vmpools/web/").content.decode()
        assert 'data-testid="pool-scale"' not in page and "autoscaler-form" not in page
        assert AuditLog.objects.filter(
            actor=world.carol, action="vmpool.scale", outcome=AuditOutcome.DENIED
        ).exists()


def test_the_template_form_rolls_a_new_template_out_and_refuses_bad_input(world):
    pool = make_pool(world)
    client = client_for(world.bob)
    form = {
        "image": str(pool.image_id),
        "vcpus": "1",
        "memory_mib": "384",
        "disk_gib": "0",
        "restart_policy": "OnFailure",
        "strategy": "rolling",
        "max_unavailable": "0",
        "warm": "1",
        "warm_mode": "stopped",
    }
    bad = client.post("/t/acme/vmpools/web/update/", {**form, "vcpus": "0"})
    assert bad.status_code == 400 and 'data-testid="pool-template-form"' in bad.content.decode()
    assert VMPool.objects.get(pk=pool.pk).template_generation == 1
    response = client.post("/t/acme/vmpools/web/update/", form, follow=True)
    assert "the new template is rolled out" in response.content.decode()
    pool.refresh_from_db()
    assert (pool.template_generation, pool.memory_mib, pool.warm) == (2, 384, 1)
    page = client.get("/t/acme/vmpools/web/").content.decode()
    assert "Template 2: updated 0 of 2" in page


def test_the_strategy_and_warm_mode_are_chosen_on_the_forms_and_shown(world, tiny_image):
    client = client_for(world.bob)
    new = client.post(
        NEW, {**FORM, "image": str(tiny_image.pk), "strategy": "recreate", "warm_mode": "paused"}
    )
    assert new.status_code == 302
    pool = VMPool.objects.get(name="web")
    assert (pool.strategy, pool.warm_mode) == ("recreate", "paused")
    page = client.get("/t/acme/vmpools/web/").content.decode()
    assert "a changed template deletes every member, then makes new ones" in page
    assert "(charged as running VMs)" in page
    form = {
        "image": str(pool.image_id),
        "vcpus": "1",
        "memory_mib": "256",
        "disk_gib": "0",
        "restart_policy": "OnFailure",
        "strategy": "blue-green",
        "max_unavailable": "0",
        "warm": "0",
        "warm_mode": "paused",
    }
    bad = client.post("/t/acme/vmpools/web/update/", form)
    assert bad.status_code == 400 and "blue-green" in bad.content.decode()
    assert VMPool.objects.get(pk=pool.pk).strategy == "recreate"
    response = client.post(
        "/t/acme/vmpools/web/update/",
        {**form, "strategy": "rolling", "warm_mode": "stopped"},
        follow=True,
    )
    assert "web is saved." in response.content.decode()
    pool.refresh_from_db()
    assert (pool.strategy, pool.warm_mode, pool.template_generation) == ("rolling", "stopped", 1)


def test_another_tenants_pool_is_not_found(world):
    make_pool(world, "secret", tenant=world.globex)
    client = client_for(world.bob)
    assert client.get("/t/acme/vmpools/secret/").status_code == 404
    assert client.get("/t/globex/vmpools/secret/").status_code == 404
    assert client.post("/t/acme/vmpools/secret/scale/", {"replicas": "0"}).status_code == 404
    assert client.post("/t/acme/vmpools/secret/update/", {"paused": "1"}).status_code == 404


def test_staff_see_pools_and_autoscalers_in_admin_read_only(world):
    pool = make_pool(world)
    autoscaler = autoscaler_services.autoscaler_create(
        actor=None, tenant=world.acme, pool=pool, max_replicas=3, target=50
    )
    client = client_for(world.admin)
    listing = client.get("/admin/compute/vmpool/")
    assert listing.status_code == 200 and b"web" in listing.content
    assert client.get(f"/admin/compute/vmpool/{pool.pk}/change/").status_code == 200
    assert client.get(f"/admin/compute/autoscaler/{autoscaler.pk}/change/").status_code == 200
    assert client.get("/admin/compute/vmpool/add/").status_code == 403
    deleted = client.post(f"/admin/compute/vmpool/{pool.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 403 and VMPool.objects.filter(pk=pool.pk).exists()


def test_a_template_form_opened_before_a_colleagues_change_keeps_that_change(world):
    """The page was opened, then a colleague gave the members more memory; saving the
    page with one more warm member adds it and leaves the colleague's memory (and the
    template generation it started) as they are, instead of writing the page's values
    back (a rollback rollout)."""
    pool = make_pool(world)
    client = client_for(world.bob)
    page = client.get("/t/acme/vmpools/web/").content.decode()
    sent = page_form_data(page, "pool-template-form")
    assert (sent["memory_mib"], sent["warm"]) == ("256", "0")
    pool_services.pool_update(actor=world.alice, pool=pool, memory_mib=384)

    response = client.post("/t/acme/vmpools/web/update/", {**sent, "warm": "1"}, follow=True)

    assert "web is saved." in response.content.decode()
    pool.refresh_from_db()
    assert (pool.memory_mib, pool.warm, pool.template_generation) == (384, 1, 2)


def test_a_field_changed_on_the_page_and_by_a_colleague_is_refused_and_nothing_saved(world):
    pool = make_pool(world)
    client = client_for(world.bob)
    sent = page_form_data(client.get("/t/acme/vmpools/web/").content.decode(), "pool-template-form")
    pool_services.pool_update(actor=world.alice, pool=pool, memory_mib=384)

    response = client.post(
        "/t/acme/vmpools/web/update/", {**sent, "memory_mib": "512", "warm": "1"}
    )

    assert response.status_code == 400
    body = response.content.decode()
    assert "web was changed by someone else since you opened this page" in body
    assert "Changed by someone else since you opened this page: now 384." in body
    pool.refresh_from_db()
    assert (pool.memory_mib, pool.warm, pool.template_generation) == (384, 0, 2)


def test_an_autoscaler_panel_opened_before_a_colleagues_change_keeps_that_change(world):
    """bob's page shows the autoscaler; alice then raises its target. bob raises the
    maximum on his page: the maximum changes, alice's target stays. A field both of
    them changed is refused with the reason, and nothing is saved."""
    pool = make_pool(world)
    autoscaler = autoscaler_services.autoscaler_create(
        actor=None, tenant=world.acme, pool=pool, max_replicas=4, target=50
    )
    client = client_for(world.bob)
    sent = page_form_data(client.get("/t/acme/vmpools/web/").content.decode(), "autoscaler-form")
    autoscaler_services.autoscaler_update(actor=world.alice, autoscaler=autoscaler, target=70)

    saved = client.post("/t/acme/vmpools/web/autoscaler/", {**sent, "max_replicas": "6"})

    assert saved.status_code == 302
    autoscaler.refresh_from_db()
    assert (autoscaler.max_replicas, autoscaler.target) == (6, 70)

    refused = client.post("/t/acme/vmpools/web/autoscaler/", {**sent, "target": "60"})
    assert refused.status_code == 400
    body = refused.content.decode()
    assert "The autoscaler of web was changed by someone else since you opened" in body
    assert "now 70." in body
    autoscaler.refresh_from_db()
    assert (autoscaler.max_replicas, autoscaler.target) == (6, 70)


def test_a_stale_autoscaler_panel_neither_overwrites_an_added_one_nor_revives_a_removed_one(
    world,
):
    pool = make_pool(world)
    client = client_for(world.bob)
    adding = page_form_data(client.get("/t/acme/vmpools/web/").content.decode(), "autoscaler-form")
    added = autoscaler_services.autoscaler_create(
        actor=world.alice, tenant=world.acme, pool=pool, max_replicas=3, target=80
    )

    refused = client.post("/t/acme/vmpools/web/autoscaler/", adding)

    assert refused.status_code == 400
    assert "web was given an autoscaler by someone else" in refused.content.decode()
    added.refresh_from_db()
    assert (added.max_replicas, added.target) == (3, 80)

    changing = page_form_data(
        client.get("/t/acme/vmpools/web/").content.decode(), "autoscaler-form"
    )
    autoscaler_services.autoscaler_delete(actor=world.alice, autoscaler=added)
    refused = client.post("/t/acme/vmpools/web/autoscaler/", {**changing, "max_replicas": "5"})
    assert refused.status_code == 400
    assert "The autoscaler of web was removed by someone else" in refused.content.decode()
    assert not Autoscaler.objects.exists()
