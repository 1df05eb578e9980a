"""Importing images from an HTTP(S) URL: a real HTTP server on 127.0.0.1, real qemu-img,
the real database and Redis. Good files become standalone qcow2 files that VMs can use;
bad ones are refused with a reason and leave nothing behind."""

from __future__ import annotations

import json
import subprocess

import pytest
from django.utils import translation

from compute.choices import ImagePhase
from compute.models import Image
from compute.services import images as image_services
from monitoring.models import Event
from portal.exceptions import Conflict, PermissionDenied, QuotaExceeded, ValidationError
from tenants.models import AuditLog, Quota, Reservation
from tests.compute.images.conftest import Route, make_qcow2, make_raw, qemu_img, sha256

pytestmark = [pytest.mark.libvirt_test_driver, pytest.mark.django_db]
MIB = 1024 * 1024


def used_storage(tenant) -> int:
    return Quota.objects.get(tenant=tenant).used_storage


def import_url(demo, url: str, name: str = "disk", **kwargs) -> Image:
    image = image_services.image_import_url(
        actor=demo.bob, tenant=demo.acme, name=name, url=url, **kwargs
    )
    image_services.image_import_run(image.pk)
    image.refresh_from_db()
    return image


def staging_files(image_dir) -> list[str]:
    staging = image_dir / ".staging"
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


def qemu_info(path) -> dict:
    done = subprocess.run(
        ["qemu-img", "info", "--output=json", str(path)], check=True, capture_output=True
    )
    return json.loads(done.stdout)


def assert_nothing_left(image: Image, image_dir) -> None:
    """Failed with a reason, no file anywhere, no storage charged."""
    assert image.phase == ImagePhase.FAILED
    assert image.message
    assert staging_files(image_dir) == []
    assert not list((image_dir / "tenants").rglob("*")) or not any(
        p.is_file() for p in (image_dir / "tenants").rglob("*")
    )
    assert not Reservation.objects.filter(ref=image.quota_ref, released__isnull=True).exists()
    assert used_storage(image.tenant) == 0


def test_a_qcow2_from_a_url_becomes_a_ready_standalone_image_charged_by_its_size(
    demo, image_dir, file_server, tmp_path
):
    source = make_qcow2(tmp_path / "src.qcow2", size="64M")
    url = file_server.add("/images/src.qcow2", source)

    image = image_services.image_import_url(
        actor=demo.bob, tenant=demo.acme, name="my-disk", url=url, sha256=sha256(source)
    )
    assert image.phase == ImagePhase.PENDING
    # Without a declared size the import holds the size limit until it knows better.
    assert used_storage(demo.acme) == 20
    image_services.image_import_run(image.pk)
    image.refresh_from_db()

    assert image.phase == ImagePhase.READY, image.message
    assert image.disk_path == str(image_dir / "tenants" / "acme" / f"{image.uid}.qcow2")
    assert image.kind == "disk" and image.disk_format == "qcow2"
    assert image.source_format == "qcow2"
    assert image.sha256 == sha256(source)
    assert image.virtual_size_bytes == 64 * MIB
    info = qemu_info(image.disk_path)
    assert info["format"] == "qcow2"
    assert "backing-filename" not in info
    assert oct((image_dir / "tenants" / "acme" / f"{image.uid}.qcow2").stat().st_mode)[-3:] == "644"
    assert staging_files(image_dir) == []
    assert used_storage(demo.acme) == 1  # trued up: a small file is one GiB
    assert Reservation.objects.get(ref=image.quota_ref, released__isnull=True).storage == 1
    reasons = list(
        Event.objects.filter(kind="image", name="my-disk").values_list("reason", flat=True)
    )
    assert {"ImportAccepted", "Importing", "Ready"} <= set(reasons)
    assert AuditLog.objects.filter(action="image.import", actor=demo.bob).exists()


def test_a_raw_image_is_converted_to_qcow2_with_its_data(demo, image_dir, file_server, tmp_path):
    source = make_raw(tmp_path / "disk.raw", size=4 * MIB, data=b"hello-from-raw")
    image = import_url(demo, file_server.add("/disk.raw", source), size_bytes=4 * MIB)

    assert image.phase == ImagePhase.READY, image.message
    assert image.source_format == "raw"
    assert qemu_info(image.disk_path)["format"] == "qcow2"
    back = tmp_path / "back.raw"
    qemu_img("convert", "-f", "qcow2", "-O", "raw", image.disk_path, str(back))
    assert back.read_bytes() == source.read_bytes()


def test_running_the_import_again_changes_nothing(demo, image_dir, file_server, tmp_path):
    url = file_server.add("/a.qcow2", make_qcow2(tmp_path / "a.qcow2"))
    image = import_url(demo, url)
    version = image.resource_version
    image_services.image_import_run(image.pk)
    image.refresh_from_db()
    assert (image.phase, image.resource_version) == (ImagePhase.READY, version)
    assert file_server.hits == ["/a.qcow2"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<!doctype html><html><body>Not found</body></html>\n" * 40000, "text"),
        (b"", "empty"),
        (b"\x00\x01" * 300, "too small"),
        (b"\x00" * (2 * MIB + 100), "512-byte sectors"),
        (b"The quick brown fox jumps over the lazy dog.\n" * 50000, "text"),
    ],
    ids=["html-page", "empty", "tiny-raw", "odd-size", "plain-text"],
)
def test_a_file_that_is_not_a_disk_image_is_refused_and_leaves_nothing(
    demo, image_dir, file_server, body, reason
):
    image = import_url(demo, file_server.add("/page", Route(body=body)))
    assert reason in image.message
    assert_nothing_left(image, image_dir)


def test_a_wrong_checksum_is_refused_and_leaves_nothing(demo, image_dir, file_server, tmp_path):
    url = file_server.add("/a.qcow2", make_qcow2(tmp_path / "a.qcow2"))
    image = import_url(demo, url, sha256="0" * 64)
    assert "Checksum mismatch" in image.message
    assert_nothing_left(image, image_dir)


def test_a_qcow2_with_a_backing_file_is_refused(demo, image_dir, file_server, tmp_path):
    base = make_qcow2(tmp_path / "base.qcow2")
    overlay = tmp_path / "overlay.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", str(overlay), "64M")
    image = import_url(demo, file_server.add("/overlay.qcow2", overlay))
    assert "backing file" in image.message
    assert_nothing_left(image, image_dir)
    assert base.exists()


def test_a_qcow2_with_an_external_data_file_is_refused(demo, image_dir, file_server, tmp_path):
    data = tmp_path / "data.raw"
    image_file = tmp_path / "external.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", f"data_file={data}", str(image_file), "8M")
    image = import_url(demo, file_server.add("/external.qcow2", image_file))
    assert "external file" in image.message
    assert_nothing_left(image, image_dir)


def test_a_download_larger_than_declared_is_cut_and_refused(demo, image_dir, file_server):
    body = b"\x00" * (3 * MIB)
    # No Content-Length: the size is only learned by reading, and reading stops there.
    url = file_server.add("/big.raw", Route(body=body, content_length=None))
    image = import_url(demo, url, size_bytes=2 * MIB)
    assert "stopped and refused" in image.message
    assert_nothing_left(image, image_dir)


def test_a_download_announced_above_the_limit_is_refused_before_reading(
    demo, image_dir, file_server, settings
):
    settings.ISOTOPE_IMAGE_MAX_BYTES = 2 * MIB
    url = file_server.add("/big.raw", Route(body=b"\x00" * (3 * MIB)))
    image = import_url(demo, url)
    assert "more than the 2,097,152 bytes allowed" in image.message
    assert_nothing_left(image, image_dir)


def test_a_download_without_length_past_the_limit_is_cut(demo, image_dir, file_server, settings):
    settings.ISOTOPE_IMAGE_MAX_BYTES = 2 * MIB
    url = file_server.add("/big.raw", Route(body=b"\x00" * (3 * MIB), content_length=None))
    image = import_url(demo, url)
    assert "passed 2,097,152 bytes" in image.message
    assert_nothing_left(image, image_dir)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://127.0.0.1/disk.qcow2", "Only http:// and https://"),
        ("file:///etc/passwd", "Only http:// and https://"),
        ("http://user:pw@127.0.0.1:8/disk.qcow2", "Credentials"),
        ("http://10.0.0.1/disk.qcow2", "non-public address"),
        ("http://169.254.169.254/latest/meta-data/", "non-public address"),
        ("http://[::1]:8080/disk.qcow2", "non-public address"),
        ("not a url", "Only http:// and https://"),
    ],
)
def test_urls_other_than_public_http_are_refused_at_once(demo, image_dir, url, problem):
    with pytest.raises(ValidationError) as refused:
        image_services.image_import_url(actor=demo.bob, tenant=demo.acme, name="x", url=url)
    assert problem in refused.value.errors["url"][0]
    assert not Image.objects.filter(name="x").exists()
    assert used_storage(demo.acme) == 0


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Only http:// and https:// URLs can be imported."),
        ("zh-hans", "只能导入 http:// 和 https:// 的 URL。"),
    ],
)
def test_the_url_field_error_is_in_the_requesters_language(demo, image_dir, language, expected):
    with translation.override(language), pytest.raises(ValidationError) as refused:
        image_services.image_import_url(
            actor=demo.bob, tenant=demo.acme, name="x", url="ftp://127.0.0.1/disk.qcow2"
        )
    assert refused.value.errors["url"] == [expected]
    assert not Image.objects.filter(name="x").exists()


def test_loopback_is_refused_unless_allow_listed(demo, image_dir, file_server, settings):
    settings.ISOTOPE_IMAGE_URL_ALLOW = []
    with pytest.raises(ValidationError) as refused:
        image_services.image_import_url(
            actor=demo.bob, tenant=demo.acme, name="x", url=file_server.url("/a")
        )
    assert "non-public address (127.0.0.1)" in refused.value.errors["url"][0]
    assert file_server.hits == []


def test_a_redirect_to_an_internal_address_is_refused_without_following_it(
    demo, image_dir, file_server
):
    url = file_server.add(
        "/redirect", Route(status=302, location="http://169.254.169.254/latest/meta-data/")
    )
    image = import_url(demo, url)
    assert "non-public address (169.254.169.254)" in image.message
    assert_nothing_left(image, image_dir)


def test_redirects_to_allowed_places_are_followed(demo, image_dir, file_server, tmp_path):
    target = file_server.add("/real.qcow2", make_qcow2(tmp_path / "r.qcow2"))
    image = import_url(demo, file_server.add("/go", Route(status=301, location=target)))
    assert image.phase == ImagePhase.READY, image.message
    assert file_server.hits == ["/go", "/real.qcow2"]


def test_an_http_error_is_a_clear_failure(demo, image_dir, file_server):
    image = import_url(demo, file_server.url("/missing.qcow2"))
    assert image.message == "The server answered HTTP 404 Not Found."
    assert_nothing_left(image, image_dir)


def test_an_import_that_does_not_fit_the_quota_is_refused_with_a_hint(demo, image_dir):
    Quota.objects.filter(tenant=demo.acme).update(storage=5)
    with pytest.raises(QuotaExceeded) as refused:
        image_services.image_import_url(
            actor=demo.bob, tenant=demo.acme, name="x", url="https://images.example.invalid/a"
        )
    assert "give the file's size" in refused.value.message
    assert not Image.objects.filter(name="x").exists()
    image = image_services.image_import_url(
        actor=demo.bob,
        tenant=demo.acme,
        name="x",
        url="https://images.example.invalid/a",
        size_bytes=3 * 1024**3 + 1,
    )
    assert used_storage(demo.acme) == 4
    assert image.phase == ImagePhase.PENDING


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "new"}, "name"),
        ({"sha256": "abc"}, "sha256"),
        ({"size_bytes": "lots"}, "size_bytes"),
        ({"size_bytes": 0}, "size_bytes"),
        ({"size_bytes": 10**15}, "size_bytes"),
        ({"display_name": "x" * 101}, "display_name"),
    ],
)
def test_bad_fields_are_refused_and_change_nothing(demo, image_dir, fields, field):
    arguments = {"name": "ok", "url": "https://images.example.invalid/a", **fields}
    with pytest.raises(ValidationError) as refused:
        image_services.image_import_url(actor=demo.bob, tenant=demo.acme, **arguments)
    assert field in refused.value.errors
    assert not Image.objects.exists()
    assert used_storage(demo.acme) == 0


def test_a_viewer_cannot_import(demo, image_dir):
    with pytest.raises(PermissionDenied):
        image_services.image_import_url(
            actor=demo.carol, tenant=demo.acme, name="x", url="https://images.example.invalid/a"
        )
    assert AuditLog.objects.filter(actor=demo.carol, action="image.create").exists()


def test_a_failed_import_name_can_be_used_again(demo, image_dir, file_server, tmp_path):
    failed = import_url(demo, file_server.url("/missing"), name="again")
    assert failed.phase == ImagePhase.FAILED
    url = file_server.add("/a.qcow2", make_qcow2(tmp_path / "a.qcow2"))
    image = import_url(demo, url, name="again")
    assert image.phase == ImagePhase.READY
    assert Image.objects.filter(tenant=demo.acme, name="again").count() == 1


def test_a_name_in_use_is_refused(demo, image_dir, file_server, tmp_path):
    import_url(demo, file_server.add("/a.qcow2", make_qcow2(tmp_path / "a.qcow2")), name="dup")
    with pytest.raises(ValidationError) as refused:
        image_services.image_import_url(
            actor=demo.bob, tenant=demo.acme, name="dup", url=file_server.url("/a.qcow2")
        )
    assert "exists already" in refused.value.errors["name"][0]


def test_only_admins_delete_and_deleting_releases_storage_and_removes_the_file(
    demo, image_dir, file_server, tmp_path, django_capture_on_commit_callbacks
):
    image = import_url(demo, file_server.add("/a.qcow2", make_qcow2(tmp_path / "a.qcow2")))
    for actor in (demo.bob, demo.carol, demo.dave):
        with pytest.raises(PermissionDenied):
            image_services.image_delete(actor=actor, image=image)
    assert Image.objects.filter(pk=image.pk).exists()

    with django_capture_on_commit_callbacks(execute=True):
        image_services.image_delete(actor=demo.alice, image=image)
    assert not Image.objects.filter(pk=image.pk).exists()
    assert used_storage(demo.acme) == 0
    assert not any(p.is_file() for p in image_dir.rglob("*"))
    assert AuditLog.objects.filter(action="image.delete", actor=demo.alice).exists()
    assert Event.objects.filter(kind="image", name="disk", reason="Deleted").exists()


def test_platform_images_are_not_deleted_through_the_tenant_api(demo, tiny_image):
    with pytest.raises(Conflict):
        image_services.image_delete(actor=demo.alice, image=tiny_image)
