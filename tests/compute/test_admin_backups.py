"""Backups in Django admin: a read-only list of every tenant's backups for staff, and
deletion through the backup service (its rules, its task, one audit entry a backup)."""

from __future__ import annotations

import pytest

from compute.choices import BackupPhase
from compute.models import Backup
from tenants.models import AuditLog
from tests.compute.test_api_backups import make_backup, world  # noqa: F401 - the fixture

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

LIST = "/admin/compute/backup/"


def test_staff_see_every_backup_read_only(client, world):  # noqa: F811
    backup = make_backup(world)
    Backup.objects.filter(pk=backup.pk).update(size_bytes=3 * 1024**2, progress=100)
    client.force_login(world.admin)
    page = client.get(LIST).content.decode()
    for text in ("b1", "acme", "web1 @ s1", "Ready", "3.0\xa0MB", "100 %"):
        assert text in page, text
    assert client.get(f"{LIST}add/").status_code == 403
    detail = client.get(f"{LIST}{backup.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content
    # Nothing changes through the form.
    client.post(f"{LIST}{backup.pk}/change/", {"name": "renamed"})
    assert Backup.objects.get(pk=backup.pk).name == "b1"
    # Tenant members who are not staff do not get in.
    client.force_login(world.alice)
    assert client.get(LIST).status_code == 302


def test_deleting_in_admin_goes_through_the_service_and_is_audited(client, world):  # noqa: F811
    first = make_backup(world)
    second = make_backup(world, name="b2", vm=first.vm)
    busy = make_backup(world, name="b3", vm=first.vm)
    Backup.objects.filter(pk=busy.pk).update(phase=BackupPhase.EXPORTING)
    client.force_login(world.admin)
    response = client.post(f"{LIST}{first.pk}/delete/", {"post": "yes"}, follow=True)
    assert response.status_code == 200
    # Marked Deleting (the task removes the files, then the row): the row is still here.
    assert Backup.objects.get(pk=first.pk).phase == BackupPhase.DELETING
    entry = AuditLog.objects.get(action="backup.delete", target="backup/b1")
    assert entry.actor == world.admin and entry.tenant == world.acme
    assert b"deleting; its files are removed by the worker" in response.content
    assert b"deleted successfully" not in response.content  # it is not deleted yet

    # A refusal is said on the backup's own page, and nothing claims it was deleted.
    response = client.post(f"{LIST}{busy.pk}/delete/", {"post": "yes"}, follow=True)
    assert response.redirect_chain[-1][0] == f"{LIST}{busy.pk}/change/"
    assert b"Cannot delete backup b3 while it is Exporting" in response.content
    assert b"deleted successfully" not in response.content
    assert Backup.objects.get(pk=busy.pk).phase == BackupPhase.EXPORTING

    # The bulk action keeps Django's confirmation page first.
    selected = {"action": "delete_selected", "_selected_action": [second.pk, busy.pk]}
    confirm = client.post(LIST, selected)
    assert confirm.status_code == 200 and b"Are you sure" in confirm.content
    assert Backup.objects.get(pk=second.pk).phase == BackupPhase.READY

    # Confirmed: one audit entry a backup; a busy one is refused, unchanged.
    response = client.post(LIST, {**selected, "post": "yes"}, follow=True)
    assert Backup.objects.get(pk=second.pk).phase == BackupPhase.DELETING
    assert Backup.objects.get(pk=busy.pk).phase == BackupPhase.EXPORTING
    assert AuditLog.objects.filter(action="backup.delete", target="backup/b2").count() == 1
    assert not AuditLog.objects.filter(action="backup.delete", target="backup/b3").exists()
    assert b"Cannot delete backup b3 while it is Exporting" in response.content
    assert b"1 of 2 selected deleted or being deleted." in response.content
    assert b"Successfully deleted" not in response.content
