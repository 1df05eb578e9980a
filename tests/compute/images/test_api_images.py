"""The images API: list, import from a URL (202, Idempotency-Key), the tus upload
endpoint (HEAD/PATCH/DELETE, resumable), delete (If-Match), roles and isolation."""

from __future__ import annotations

import hashlib
import socket
from urllib.parse import urlsplit

import pytest
from django.db import transaction

from compute.choices import ImagePhase
from compute.models import Image
from compute.services import images as image_services
from tenants.models import Quota
from tests.compute.images.conftest import make_qcow2, sha256

pytestmark = [pytest.mark.libvirt_test_driver]
MIB = 1024 * 1024
TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}


def purge_storage_queue() -> int:
    """Empty the ``storage`` queue; returns how many task messages it held."""
    from portal.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.queue_purge("storage") or 0


def upload_body(name: str, size: int, **spec) -> dict:
    return {"metadata": {"name": name}, "spec": {"source": {"upload": {"sizeBytes": size}}, **spec}}


def patch(client, url: str, offset: int, data: bytes, **headers):
    return client.generic(
        "PATCH",
        url,
        data=data,
        content_type="application/offset+octet-stream",
        HTTP_UPLOAD_OFFSET=str(offset),
        **{**TUS, **headers},
    )


def begin(api, user, name: str, data: bytes, **spec) -> str:
    response = api(user).post(
        "/api/v1/tenants/acme/images/", upload_body(name, len(data), **spec), format="json"
    )
    assert response.status_code == 202, response.content
    return urlsplit(response.json()["status"]["upload"]["url"]).path


@pytest.mark.django_db
def test_an_upload_in_chunks_becomes_ready_and_the_import_starts_once(
    demo, api, image_dir, tmp_path, django_capture_on_commit_callbacks
):
    data = make_qcow2(tmp_path / "up.qcow2").read_bytes()
    client = api(demo.bob)
    response = client.post(
        "/api/v1/tenants/acme/images/",
        upload_body("uploaded", len(data), sha256=hashlib.sha256(data).hexdigest()),
        format="json",
    )
    assert response.status_code == 202
    body = response.json()
    assert response["Location"].endswith("/api/v1/tenants/acme/images/uploaded/")
    assert body["status"]["phase"] == "Uploading"
    assert body["status"]["upload"]["length"] == len(data)
    url = urlsplit(body["status"]["upload"]["url"]).path
    assert url == "/api/v1/tenants/acme/images/uploaded/upload/"
    assert Quota.objects.get(tenant=demo.acme).used_storage == 1

    head = client.head(url, **TUS)
    assert head.status_code == 200
    assert (head["Upload-Offset"], head["Upload-Length"]) == ("0", str(len(data)))
    assert head["Tus-Resumable"] == "1.0.0"
    assert "Upload-Expires" in head

    half = len(data) // 2
    first = patch(client, url, 0, data[:half])
    assert first.status_code == 204, first.content
    assert first["Upload-Offset"] == str(half)
    # A retry of the same chunk (the answer was lost) conflicts instead of doubling it.
    again = patch(client, url, 0, data[:half])
    assert again.status_code == 409
    assert again["Content-Type"] == "application/problem+json"
    assert client.head(url, **TUS)["Upload-Offset"] == str(half)

    purge_storage_queue()
    with django_capture_on_commit_callbacks(execute=True):
        last = patch(client, url, half, data[half:])
    assert last.status_code == 204
    assert last["Upload-Offset"] == str(len(data))
    image = Image.objects.get(name="uploaded")
    assert image.phase == ImagePhase.PENDING
    assert purge_storage_queue() == 1  # one import task was queued, on commit

    image_services.image_import_run(image.pk)
    image.refresh_from_db()
    assert image.phase == ImagePhase.READY, image.message
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert not (image_dir / ".staging" / f"{image.uid}.upload").exists()
    listed = client.get("/api/v1/tenants/acme/images/").json()
    mine = next(i for i in listed["items"] if i["metadata"]["name"] == "uploaded")
    assert mine["status"]["phase"] == "Ready"
    assert mine["spec"]["source"] == {"upload": {"sizeBytes": len(data)}}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("headers", "content_type", "offset", "status", "field"),
    [
        ({"HTTP_TUS_RESUMABLE": "0.2.2"}, None, "0", 412, "Tus-Resumable"),
        ({}, "application/octet-stream", "0", 415, "Content-Type"),
        ({}, None, "-1", 400, "Upload-Offset"),
        ({}, None, "abc", 400, "Upload-Offset"),
        ({}, None, "99999999999999999999999", 400, "Upload-Offset"),
    ],
)
def test_bad_tus_requests_are_clear_errors_and_write_nothing(
    demo, api, image_dir, headers, content_type, offset, status, field
):
    url = begin(api, demo.bob, "bad", b"\x00" * 4096)
    response = api(demo.bob).generic(
        "PATCH",
        url,
        data=b"\x00" * 512,
        content_type=content_type or "application/offset+octet-stream",
        HTTP_UPLOAD_OFFSET=offset,
        **{**TUS, **headers},
    )
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"]
    assert Image.objects.get(name="bad").upload_offset == 0


@pytest.mark.django_db
def test_bytes_past_the_declared_length_are_refused(demo, api, image_dir):
    url = begin(api, demo.bob, "short", b"\x00" * 1000)
    response = patch(api(demo.bob), url, 0, b"\x00" * 1001)
    assert response.status_code == 400
    assert "declared with 1,000 bytes" in response.json()["detail"]
    image = Image.objects.get(name="short")
    assert image.upload_offset == 0
    assert not image_dir.joinpath(".staging", f"{image.uid}.upload").exists()


@pytest.mark.django_db
def test_an_upload_larger_than_the_limit_is_refused_before_any_byte(demo, api, image_dir, settings):
    settings.ISOTOPE_IMAGE_MAX_BYTES = 4 * MIB
    response = api(demo.bob).post(
        "/api/v1/tenants/acme/images/", upload_body("big", 4 * MIB + 1), format="json"
    )
    assert response.status_code == 400
    assert "spec.sizeBytes" in response.json()["errors"]
    assert not Image.objects.exists()


@pytest.mark.django_db
def test_cancelling_an_upload_drops_it_and_its_storage(
    demo, api, image_dir, django_capture_on_commit_callbacks
):
    url = begin(api, demo.bob, "gone", b"\x00" * 4096)
    client = api(demo.bob)
    patch(client, url, 0, b"\x00" * 1024)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(url, **TUS)
    assert response.status_code == 204
    assert not Image.objects.filter(name="gone").exists()
    assert Quota.objects.get(tenant=demo.acme).used_storage == 0
    assert list((image_dir / ".staging").iterdir()) == []
    assert client.head(url, **TUS).status_code == 404


@pytest.mark.django_db
def test_viewers_read_operators_upload_admins_delete(
    demo, api, image_dir, tmp_path, django_capture_on_commit_callbacks
):
    data = make_qcow2(tmp_path / "a.qcow2").read_bytes()
    body = upload_body("roles", len(data))
    assert (
        api(demo.carol).post("/api/v1/tenants/acme/images/", body, format="json").status_code == 403
    )
    url = begin(api, demo.bob, "roles", data)
    assert patch(api(demo.carol), url, 0, data).status_code == 403
    assert api(demo.carol).head(url, **TUS).status_code == 200
    assert patch(api(demo.bob), url, 0, data).status_code == 204
    image_services.image_import_run(Image.objects.get(name="roles").pk)

    detail = "/api/v1/tenants/acme/images/roles/"
    assert api(demo.carol).get(detail).json()["status"]["actions"] == []
    assert api(demo.alice).get(detail).json()["status"]["actions"] == ["delete"]
    assert api(demo.bob).delete(detail).status_code == 403
    assert api(demo.dave).get(detail).status_code == 404
    assert api(demo.dave).delete("/api/v1/tenants/acme/images/roles/").status_code == 404
    version = api(demo.alice).get(detail)["ETag"]
    assert api(demo.alice).delete(detail, HTTP_IF_MATCH='"999"').status_code == 412
    with django_capture_on_commit_callbacks(execute=True):
        assert api(demo.alice).delete(detail, HTTP_IF_MATCH=version).status_code == 204
    assert api(demo.alice).get(detail).status_code == 404
    assert Quota.objects.get(tenant=demo.acme).used_storage == 0


@pytest.mark.django_db
def test_the_list_shows_own_images_and_public_ones_never_another_tenants(
    demo, api, image_dir, tiny_image
):
    Image.objects.create(
        name="secret", kind="disk", disk_path="/x", tenant=demo.globex, public=False
    )
    Image.objects.create(
        name="shared", kind="disk", disk_path="/y", tenant=demo.globex, public=True
    )
    Image.objects.create(
        name="half", kind="disk", tenant=demo.globex, public=True, phase=ImagePhase.IMPORTING
    )
    begin(api, demo.bob, "mine", b"\x00" * 4096)
    names = [
        i["metadata"]["name"]
        for i in api(demo.carol).get("/api/v1/tenants/acme/images/").json()["items"]
    ]
    assert names == ["mine", "shared", "tiny"]
    assert api(demo.carol).get("/api/v1/tenants/acme/images/secret/").status_code == 404
    assert api(demo.carol).get("/api/v1/tenants/acme/images/shared/").status_code == 200
    assert api(demo.outsider).get("/api/v1/tenants/acme/images/").status_code == 404
    assert api(demo.carol).get("/api/v1/tenants/acme/images/?phase=Nope").status_code == 400


@pytest.mark.django_db
def test_a_url_import_is_202_and_an_idempotency_key_never_makes_a_twin(demo, api, image_dir):
    body = {
        "metadata": {"name": "from-url"},
        "spec": {"source": {"url": "https://images.example.invalid/disk.qcow2"}, "sizeBytes": 5},
    }
    client = api(demo.bob)
    first = client.post(
        "/api/v1/tenants/acme/images/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    again = client.post(
        "/api/v1/tenants/acme/images/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"
    assert first.json()["metadata"]["uid"] == again.json()["metadata"]["uid"]
    assert Image.objects.filter(name="from-url").count() == 1
    assert first.json()["status"]["phase"] == "Pending"
    assert first.json()["spec"]["source"] == {"url": "https://images.example.invalid/disk.qcow2"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"source": {"url": "ftp://example.com/a"}}, "spec.source.url"),
        ({"source": {"url": "http://127.0.0.1/a"}}, "spec.source.url"),
        ({"source": {}}, "spec.source.url"),
        ({"source": {"url": "https://a.invalid/x", "upload": {"sizeBytes": 1}}}, "spec.source.url"),
        ({"source": {"upload": {"sizeBytes": "x"}}}, "spec.source.upload.sizeBytes"),
        ({"source": {"upload": {"sizeBytes": 0}}}, "spec.sizeBytes"),
        ({"source": {"url": "https://a.invalid/x"}, "sha256": "xyz"}, "spec.sha256"),
        ({"source": {"url": "https://a.invalid/x"}, "colour": "red"}, "spec.colour"),
    ],
)
def test_bad_create_requests_are_field_errors_and_change_nothing(
    demo, api, image_dir, settings, spec, field
):
    settings.ISOTOPE_IMAGE_URL_ALLOW = []
    response = api(demo.bob).post(
        "/api/v1/tenants/acme/images/", {"metadata": {"name": "x"}, "spec": spec}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"], response.json()
    assert not Image.objects.exists()


# --- Over the network, with a real tus client and a broken connection ---------------------
def _cut_patch(live_url: str, path: str, token: str, offset: int, chunk: bytes) -> None:
    """Send a PATCH whose body stops halfway, then drop the connection."""
    host, port = urlsplit(live_url).hostname, urlsplit(live_url).port
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Authorization: Token {token}\r\nUpload-Offset: {offset}\r\n"
        "Content-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {len(chunk)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port)) as sock:
        sock.sendall(head + chunk[: len(chunk) // 2])


def test_an_upload_cut_mid_chunk_resumes_with_a_tus_client_and_ends_intact(
    demo, live_url, image_dir, tmp_path
):
    from tusclient import client as tus_client

    from tenants.services import token_create
    from tests.conftest import wait_for

    data = make_qcow2(tmp_path / "net.qcow2", size="32M").read_bytes()
    source = tmp_path / "net-copy.qcow2"
    source.write_bytes(data)
    _, token = token_create(user=demo.bob, name="upload")
    image = image_services.image_upload_begin(
        actor=demo.bob, tenant=demo.acme, name="net", size_bytes=len(data), sha256=sha256(source)
    )
    path = "/api/v1/tenants/acme/images/net/upload/"
    _cut_patch(live_url, path, token, 0, data[:65536])
    # The broken request wrote nothing: the server still reports offset 0.
    tus = tus_client.TusClient(f"{live_url}/", headers={"Authorization": f"Token {token}"})
    uploader = tus.uploader(str(source), url=f"{live_url}{path}", chunk_size=64 * 1024)
    assert uploader.get_offset() == 0
    uploader.upload_chunk()
    _cut_patch(live_url, path, token, 64 * 1024, data[64 * 1024 : 128 * 1024])
    assert uploader.get_offset() == 64 * 1024
    uploader.offset = uploader.get_offset()
    uploader.upload()
    wait_for(lambda: Image.objects.get(pk=image.pk).phase != ImagePhase.UPLOADING, 10)
    received = image_dir / ".staging" / f"{image.uid}.upload"
    assert hashlib.sha256(received.read_bytes()).hexdigest() == sha256(source)
    with transaction.atomic():
        assert Image.objects.get(pk=image.pk).phase == ImagePhase.PENDING


@pytest.mark.django_db
def test_a_published_image_tells_other_tenants_neither_its_owner_its_source_nor_their_vms(
    demo, api, image_dir, make_host
):
    """globex's image, published by staff and imported from a signed URL, showed acme
    its owner and the URL (with its token); when dave deleted it, the refusal named
    the acme VM based on it."""
    from compute.services import vms as vm_services

    make_host()
    signed = "https://images.example.invalid/disk.qcow2?X-Amz-Signature=s3cr3t"
    shared = Image.objects.create(
        name="shared",
        kind="disk",
        disk_path="/y",
        tenant=demo.globex,
        public=True,
        source="url",
        source_url=signed,
        virtual_size_bytes=MIB,
    )
    seen = api(demo.carol).get("/api/v1/tenants/acme/images/shared/").json()
    assert "tenant" not in seen["metadata"] and seen["spec"]["source"] == {"platform": True}
    assert "globex" not in str(seen) and "s3cr3t" not in str(seen)
    own = api(demo.dave).get("/api/v1/tenants/globex/images/shared/").json()
    assert own["metadata"]["tenant"] == "globex" and own["spec"]["source"] == {"url": signed}

    vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="acme-secret",
        image="shared",
        flavor=None,
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
    )
    assert shared.vms.count() == 1
    refused = api(demo.dave).delete("/api/v1/tenants/globex/images/shared/")
    assert refused.status_code == 409
    assert "acme-secret" not in refused.content.decode()
    assert refused.json()["detail"] == (
        "shared is published, and 1 VM of another tenant is based on it: it can be "
        "deleted once that VM is gone."
    )
    assert Image.objects.filter(pk=shared.pk).exists()
