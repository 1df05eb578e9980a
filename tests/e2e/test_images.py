"""Images in the browser: a resumable upload with a progress bar that survives a dropped
connection, the image turning Ready live, a VM created from it; a URL import whose
progress streams in over the websocket. Real Celery worker, libvirt's test driver."""

from __future__ import annotations

import hashlib
import os
import re
import time

import pytest
from playwright.sync_api import expect

from compute.choices import ImagePhase
from compute.models import Image
from tests.compute.images.conftest import Route, make_qcow2
from tests.conftest import ARTIFACTS, first_held, login, requests_held

pytestmark = pytest.mark.e2e
PHASE_TIMEOUT = 30_000
KIB = 1024


def image_row(page, name: str):
    return page.locator(f'tr[data-live-kind="image"][data-live-name="{name}"]')


def test_bob_uploads_an_image_through_a_dropped_connection_and_boots_a_vm_from_it(
    demo, image_dir, make_host, flavors, celery_worker, live_url, new_page, tmp_path, settings, axe
):
    settings.ISOTOPE_IMAGE_UPLOAD_CHUNK_BYTES = 256 * KIB
    make_host("node-a")
    # A qcow2 holding 3 MiB of data: twelve 256 KiB chunks.
    source = tmp_path / "web-base.qcow2"
    make_qcow2(source, size="1G", data=os.urandom(3 * 1024 * KIB))
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/")
    page.get_by_role("link", name="Images").first.click()
    page.wait_for_url(f"{live_url}/t/acme/images/")
    expect(page.get_by_test_id("image-empty")).to_be_visible()

    patches = {"sent": 0, "dropped": 0}

    def flaky_network(route):
        if route.request.method == "PATCH":
            patches["sent"] += 1
            if patches["sent"] == 4:  # the fourth chunk never arrives: the network dropped
                patches["dropped"] += 1
                route.abort("connectionreset")
                return
            time.sleep(0.15)  # a slow link, so the progress can be watched
        route.continue_()

    page.route("**/images/web-base/upload/", flaky_network)
    form = page.get_by_test_id("image-upload-form")
    form.get_by_label("qcow2 or raw file").set_input_files(str(source))
    expect(form.get_by_label("Name")).to_have_value("web-base")  # suggested from the file
    form.get_by_role("button", name="Upload").click()

    progress = page.get_by_test_id("upload-progress")
    expect(page.get_by_test_id("upload-progress-text")).to_contain_text(re.compile(r"of 3\.\d MiB"))
    expect(page.get_by_test_id("upload-note")).to_contain_text(
        "The connection dropped; resumed", timeout=PHASE_TIMEOUT
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "images-uploading.png"), full_page=True)
    axe(page, "images-uploading")
    expect(page.get_by_test_id("upload-progress-text")).to_contain_text(
        "uploaded", timeout=PHASE_TIMEOUT
    )
    expect(progress).to_have_attribute("aria-valuenow", "100")
    assert patches["dropped"] == 1 and patches["sent"] > 12

    row = image_row(page, "web-base")
    expect(row.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)
    expect(row).to_contain_text("1.0 GiB disk")
    page.screenshot(path=str(ARTIFACTS / "images-ready.png"), full_page=True)
    axe(page, "images-ready")
    image = Image.objects.get(tenant=demo.acme, name="web-base")
    assert image.phase == ImagePhase.READY
    assert image.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()

    row.get_by_role("link", name="VM").click()
    page.wait_for_url(re.compile(r".*/t/acme/vms/new/\?image=web-base$"))
    expect(page.get_by_label("Image")).to_have_value(str(image.pk))
    page.get_by_label("Name").fill("from-upload")
    page.get_by_label(re.compile(r"^small")).check()
    page.get_by_role("button", name="Create VM").click()
    page.wait_for_url(f"{live_url}/t/acme/vms/from-upload/")
    expect(page.get_by_test_id("vm-detail").get_by_test_id("phase").first).to_have_text(
        "Running", timeout=PHASE_TIMEOUT
    )
    page.screenshot(path=str(ARTIFACTS / "images-vm-running.png"), full_page=True)
    axe(page, "images-vm-running")


def test_an_upload_cancelled_while_its_image_is_created_leaves_nothing(
    demo, image_dir, live_url, new_page, tmp_path
):
    """ "Cancel upload" shows as soon as Upload is clicked, while the image is still
    being created: a click then cancels (the image dropped, no byte sent), it is not
    ignored with the upload going on."""
    source = tmp_path / "cancel-me.qcow2"
    make_qcow2(source, size="64M", data=os.urandom(256 * KIB))
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/images/")
    form = page.get_by_test_id("image-upload-form")
    held = requests_held(page, live_url + form.get_attribute("data-api"))  # until Cancel
    form.get_by_label("qcow2 or raw file").set_input_files(str(source))
    form.get_by_role("button", name="Upload").click()
    create = first_held(page, held)
    form.get_by_role("button", name="Cancel upload").click()
    create.continue_()
    expect(page.get_by_test_id("upload-progress-text")).to_have_text("Upload cancelled.")
    expect(form.get_by_role("button", name="Upload")).to_be_enabled()
    assert not Image.objects.filter(name="cancel-me").exists()


def test_a_url_import_shows_live_progress_and_a_refusal_says_why(
    demo, image_dir, file_server, celery_worker, live_url, new_page, axe
):
    body = os.urandom(4 * 1024 * KIB)  # a raw disk, served slowly
    url = file_server.add("/slow.raw", Route(body=body, delay=0.06))
    bad = file_server.add("/page.html", Route(body=b"<html><body>login</body></html>" * 40000))
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/images/")
    form = page.get_by_test_id("image-import-form")
    form.get_by_label("URL").fill(url)
    form.get_by_label("Name").fill("slow-disk")
    form.get_by_role("button", name="Import").click()
    expect(page.get_by_test_id("messages")).to_contain_text("slow-disk: import accepted")

    row = image_row(page, "slow-disk")
    expect(row.get_by_test_id("phase")).to_have_text("Importing", timeout=PHASE_TIMEOUT)
    expect(row.locator("[data-image-progress-text]")).to_contain_text(
        re.compile(r"MiB of 4\.0 MiB · [\d.]+ [KM]iB/s"), timeout=PHASE_TIMEOUT
    )
    page.screenshot(path=str(ARTIFACTS / "images-url-progress.png"), full_page=True)
    axe(page, "images-url-progress")
    expect(row.get_by_test_id("phase")).to_have_text("Ready", timeout=PHASE_TIMEOUT)

    form.get_by_label("URL").fill(bad)
    form.get_by_label("Name").fill("not-a-disk")
    form.get_by_role("button", name="Import").click()
    row = image_row(page, "not-a-disk")
    expect(row.get_by_test_id("phase")).to_have_text("Failed", timeout=PHASE_TIMEOUT)
    expect(row.get_by_test_id("image-message")).to_contain_text("text (e.g. an HTML page)")
    page.screenshot(path=str(ARTIFACTS / "images-refused.png"), full_page=True)
    axe(page, "images-refused")


def test_a_cancel_the_server_cannot_carry_out_says_the_image_is_still_there(
    demo, image_dir, live_url, new_page, tmp_path, settings
):
    """Cancel stops the bytes and asks the server to drop the image; when that request
    fails the page says so (it said nothing, and the image stayed half uploaded)."""
    settings.ISOTOPE_IMAGE_UPLOAD_CHUNK_BYTES = 256 * KIB
    source = tmp_path / "stuck.qcow2"
    make_qcow2(source, size="64M", data=os.urandom(2 * 1024 * KIB))
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/images/")

    def slow_and_no_delete(route):
        if route.request.method == "DELETE":
            route.abort("connectionreset")
            return
        if route.request.method == "PATCH":
            time.sleep(0.2)
        route.continue_()

    page.route("**/images/stuck/upload/", slow_and_no_delete)
    form = page.get_by_test_id("image-upload-form")
    form.get_by_label("qcow2 or raw file").set_input_files(str(source))
    form.get_by_role("button", name="Upload").click()
    expect(page.get_by_test_id("upload-progress-text")).to_contain_text(re.compile(r"of 2\.\d MiB"))
    form.get_by_role("button", name="Cancel upload").click()
    expect(page.get_by_test_id("upload-progress-text")).to_have_text("Cancelling…")

    # After the DELETE was tried three times (4 s).
    expect(form.get_by_role("alert")).to_contain_text("could not drop the image", timeout=15_000)
    expect(page.get_by_test_id("upload-progress-text")).to_have_text("Upload stopped.")
    expect(form.get_by_role("button", name="Upload")).to_be_enabled()
    assert Image.objects.get(tenant=demo.acme, name="stuck").phase == ImagePhase.UPLOADING
    expect(image_row(page, "stuck")).to_be_visible()  # where it can be deleted
