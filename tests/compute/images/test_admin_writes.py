"""Saving a tenant's image in Django admin writes only the labels the admin edited: a
publish or a deletion that commits while the form is being saved is kept."""

from __future__ import annotations

import pytest
from django.test import Client

from compute.choices import ImagePhase, ImageSource
from compute.models import Image
from compute.services.images import image_delete, image_publish
from tenants.models import AuditLog
from tests.conftest import postgres_only
from tests.races import held_open, run_in_thread
from tests.tenants.test_admin import form_data

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def imported(demo, image_dir) -> Image:
    postgres_only()
    return Image.objects.create(
        name="debian",
        tenant=demo.acme,
        public=False,
        kind="disk",
        source=ImageSource.URL,
        source_url="http://127.0.0.1:9/debian.qcow2",
        phase=ImagePhase.READY,
        disk_path=f"{image_dir}/tenants/acme/debian.qcow2",
        size_bytes=65536,
    )


def save_while(work, staff: Client, url: str, data: dict):
    """POST ``data`` while ``work`` (another actor) holds the row, then let it commit."""
    with held_open(work) as commit:
        saving = run_in_thread(lambda: staff.post(url, data))
        commit()
        saving["thread"].join(timeout=30)
    assert "error" not in saving, repr(saving.get("error"))
    return saving["result"]


def test_saving_an_image_in_admin_keeps_a_publish_that_committed_meanwhile(demo, imported):
    staff = Client()
    staff.force_login(demo.admin)
    url = f"/admin/compute/image/{imported.pk}/change/"
    data = form_data(staff.get(url).content.decode(), "image_form")
    data["os_label"] = "Debian 12"

    response = save_while(
        lambda: image_publish(actor=demo.admin, image=imported, public=True), staff, url, data
    )

    assert response.status_code == 302
    fresh = Image.objects.get(pk=imported.pk)
    assert fresh.os_label == "Debian 12"
    assert fresh.public  # the publish's, not the copy read when the form came back
    assert fresh.resource_version == 3  # each write counted
    row = AuditLog.objects.get(action="image.update")
    assert (row.actor, row.detail) == (demo.admin, {"fields": ["os_label"]})
    assert AuditLog.objects.filter(action="image.publish").count() == 1


def test_saving_an_image_in_admin_does_not_bring_back_one_deleted_meanwhile(demo, imported):
    staff = Client()
    staff.force_login(demo.admin)
    url = f"/admin/compute/image/{imported.pk}/change/"
    data = form_data(staff.get(url).content.decode(), "image_form")
    data["os_label"] = "Debian 12"

    response = save_while(lambda: image_delete(actor=demo.alice, image=imported), staff, url, data)

    assert response.status_code == 404
    assert not Image.objects.filter(pk=imported.pk).exists()
    assert not AuditLog.objects.filter(action="image.update").exists()
    assert AuditLog.objects.filter(action="image.delete").count() == 1


def test_an_image_still_importing_can_be_labelled_in_admin(demo, imported):
    """Its file comes with the import: saving its labels said "A disk image needs a
    base disk path" and saved nothing."""
    Image.objects.filter(pk=imported.pk).update(phase=ImagePhase.IMPORTING, disk_path="")
    staff = Client()
    staff.force_login(demo.admin)
    url = f"/admin/compute/image/{imported.pk}/change/"
    data = form_data(staff.get(url).content.decode(), "image_form")
    data["os_label"] = "Debian 12"
    response = staff.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    fresh = Image.objects.get(pk=imported.pk)
    assert (fresh.os_label, fresh.phase, fresh.disk_path) == ("Debian 12", "Importing", "")
