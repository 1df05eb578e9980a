"""Publishing from Django admin (audited), and the Images page: list, URL import form,
delete with confirmation, for each role."""

from __future__ import annotations

import pytest
from django.test import Client

from compute.choices import ImagePhase, ImageSource
from compute.models import Image
from tenants.models import AuditLog, Quota

pytestmark = [pytest.mark.unit, pytest.mark.django_db]


def ready_image(tenant, name="golden", **fields) -> Image:
    return Image.objects.create(
        name=name,
        tenant=tenant,
        public=False,
        kind="disk",
        disk_path=f"/var/lib/isotope/images/tenants/{tenant.slug}/{name}.qcow2",
        **{"source": ImageSource.UPLOAD, "phase": ImagePhase.READY, **fields},
    )


def web(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_staff_publish_an_image_to_every_tenant_and_take_it_back(demo, api):
    image = ready_image(demo.acme)
    admin = web(demo.admin)
    globex_names = lambda: [  # noqa: E731
        i["metadata"]["name"]
        for i in api(demo.dave).get("/api/v1/tenants/globex/images/").json()["items"]
    ]
    assert "golden" not in globex_names()
    response = admin.post(
        "/admin/compute/image/", {"action": "publish", "_selected_action": [image.pk]}
    )
    assert response.status_code == 302
    image.refresh_from_db()
    assert image.public and image.tenant == demo.acme
    assert "golden" in globex_names()
    assert "golden" in web(demo.dave).get("/t/globex/vms/new/").content.decode()
    row = AuditLog.objects.get(action="image.publish")
    assert (row.actor, row.tenant, row.target) == (demo.admin, demo.acme, "image/golden")

    admin.post("/admin/compute/image/", {"action": "unpublish", "_selected_action": [image.pk]})
    image.refresh_from_db()
    assert not image.public
    assert "golden" not in globex_names()
    assert AuditLog.objects.filter(action="image.unpublish", actor=demo.admin).exists()


def test_an_image_still_importing_cannot_be_published(demo):
    image = ready_image(demo.acme, phase=ImagePhase.IMPORTING)
    web(demo.admin).post(
        "/admin/compute/image/", {"action": "publish", "_selected_action": [image.pk]}
    )
    image.refresh_from_db()
    assert not image.public
    assert not AuditLog.objects.filter(action="image.publish").exists()


@pytest.mark.parametrize(
    ("user", "forms", "delete"),
    [("carol", False, False), ("bob", True, False), ("alice", True, True)],
)
def test_the_images_page_shows_each_role_what_it_may_do(demo, user, forms, delete, tiny_image):
    ready_image(demo.acme)
    page = web(getattr(demo, user)).get("/t/acme/images/").content.decode()
    assert 'data-image="golden"' in page and 'data-image="tiny"' in page
    assert ('data-testid="image-upload-form"' in page) is forms
    assert ('data-testid="image-import-form"' in page) is forms
    assert ('aria-label="Delete golden"' in page) is delete
    assert 'aria-label="Delete tiny"' not in page  # platform images are not the tenant's


def test_the_images_page_is_404_for_outsiders(demo):
    assert web(demo.dave).get("/t/acme/images/").status_code == 404
    assert web(demo.outsider).get("/t/acme/images/").status_code == 404


def test_the_url_import_form_shows_field_errors_and_changes_nothing(demo, image_dir, settings):
    settings.ISOTOPE_IMAGE_URL_ALLOW = []
    response = web(demo.bob).post(
        "/t/acme/images/import/",
        {"url": "http://127.0.0.1:9/disk.qcow2", "name": "Bad Name", "sha256": "nope"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "non-public address (127.0.0.1)" in page
    assert "lowercase letters" in page
    assert "64 hexadecimal characters" in page
    assert not Image.objects.exists()
    assert Quota.objects.get(tenant=demo.acme).used_storage == 0


def test_the_url_import_form_accepts_an_import(demo, image_dir):
    response = web(demo.bob).post(
        "/t/acme/images/import/",
        {"url": "https://images.example.invalid/disk.qcow2", "name": "web", "size_bytes": "100"},
    )
    assert response.status_code == 302
    image = Image.objects.get(name="web")
    assert (image.phase, image.source, image.tenant) == ("Pending", "url", demo.acme)
    assert Quota.objects.get(tenant=demo.acme).used_storage == 1


def test_viewers_and_operators_cannot_import_or_delete_from_the_page(demo, image_dir):
    image = ready_image(demo.acme)
    carol = web(demo.carol)
    url = "https://images.example.invalid/a"
    assert carol.post("/t/acme/images/import/", {"url": url, "name": "x"}).status_code == 403
    bob = web(demo.bob)
    assert bob.post("/t/acme/images/golden/delete/", {"confirm": "yes"}).status_code == 403
    assert Image.objects.filter(pk=image.pk).exists()
    assert not Image.objects.filter(name="x").exists()


def test_admins_delete_after_confirming(demo, image_dir):
    image = ready_image(demo.acme)
    alice = web(demo.alice)
    confirm = alice.get("/t/acme/images/golden/delete/")
    assert confirm.status_code == 200 and b"image-confirm-page" in confirm.content
    assert Image.objects.filter(pk=image.pk).exists()
    response = alice.post("/t/acme/images/golden/delete/", {"confirm": "yes"})
    assert response.status_code == 302
    assert not Image.objects.filter(pk=image.pk).exists()
    assert alice.post("/t/acme/images/tiny/delete/", {"confirm": "yes"}).status_code == 404


def test_staff_delete_a_tenants_image_in_admin_through_the_service(demo):
    image = ready_image(demo.acme)
    response = web(demo.admin).post(
        f"/admin/compute/image/{image.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert "deleted successfully" in response.content.decode()
    assert not Image.objects.filter(pk=image.pk).exists()
    row = AuditLog.objects.get(action="image.delete")
    assert (row.actor, row.tenant, row.target) == (demo.admin, demo.acme, "image/golden")
