"""Chaos: a worker SIGKILLed in the middle of an import. The sweep starts the import
again on another worker (or fails it after the last attempt); no half image, no file
left over, the storage charge right."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from compute.choices import ImagePhase
from compute.models import Image
from compute.services import images as image_services
from monitoring.models import Event
from tenants.models import Quota, Reservation
from tests.compute.images.conftest import make_qcow2, sha256
from tests.conftest import wait_for

pytestmark = [pytest.mark.libvirt_test_driver, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[3]


def worker(image_dir: Path, **env_extra: str) -> subprocess.Popen:
    """A real Celery worker process on the ``storage`` queue, on the test database."""
    url = urlsplit(os.environ["DATABASE_URL"])
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(url._replace(path=f"/{connection.settings_dict['NAME']}")),
        "ISOTOPE_DEBUG": "1",
        "ISOTOPE_IMAGE_DIR": str(image_dir),
        "ISOTOPE_IMAGE_URL_ALLOW": "127.0.0.1/32",
        "ISOTOPE_IMAGE_LOCK_SECONDS": "3",
        **env_extra,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "storage"]
        + ["-P", "solo", "-c", "1", "-l", "info", "--without-heartbeat", "--without-gossip"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def workers():
    from portal.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("storage")
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        kill(process)


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def killed_mid_import(demo, image_dir, file_server, tmp_path, workers) -> Image:
    """Start an import on a worker that stops after the download; SIGKILL it there."""
    source = make_qcow2(tmp_path / "chaos.qcow2")
    first = worker(image_dir, ISOTOPE_FAILPOINTS="image.after_fetch=sleep:120")
    workers.append(first)
    image = image_services.image_import_url(
        actor=demo.bob,
        tenant=demo.acme,
        name="chaos",
        url=file_server.add("/chaos.qcow2", source),
        sha256=sha256(source),
    )
    wait_for(
        lambda: (
            Image.objects.get(pk=image.pk).phase == ImagePhase.IMPORTING
            and Image.objects.get(pk=image.pk).progress_bytes == source.stat().st_size
        ),
        60,
        message="the first worker never downloaded the image",
    )
    kill(first)
    image.refresh_from_db()
    assert image.phase == ImagePhase.IMPORTING
    assert files(image_dir) == [f".staging/{image.uid}.download"]  # the half-done work
    return image


def test_a_worker_killed_mid_import_is_replaced_and_the_import_completes(
    demo, image_dir, file_server, tmp_path, workers, settings
):
    settings.ISOTOPE_IMAGE_LOCK_SECONDS = 3
    image = killed_mid_import(demo, image_dir, file_server, tmp_path, workers)
    workers.append(worker(image_dir))
    # Nothing happens while the dead worker's lock could still be alive.
    assert image_services.images_sweep()["restarted"] == 0
    wait_for(lambda: image_services.images_sweep()["restarted"] == 1, 15, interval=0.5)
    wait_for(
        lambda: Image.objects.get(pk=image.pk).phase == ImagePhase.READY,
        60,
        message=f"not Ready: {Image.objects.get(pk=image.pk).message}",
    )
    image.refresh_from_db()
    assert image.attempts == 2
    assert files(image_dir) == [f"tenants/acme/{image.uid}.qcow2"]
    assert Reservation.objects.filter(ref=image.quota_ref, released__isnull=True).count() == 1
    assert Quota.objects.get(tenant=demo.acme).used_storage == 1
    assert Event.objects.filter(kind="image", name="chaos", reason="Ready").count() == 1


def test_an_import_killed_on_its_last_attempt_fails_and_leaves_nothing(
    demo, image_dir, file_server, tmp_path, workers, settings
):
    settings.ISOTOPE_IMAGE_LOCK_SECONDS = 3
    settings.ISOTOPE_IMAGE_MAX_ATTEMPTS = 1
    image = killed_mid_import(demo, image_dir, file_server, tmp_path, workers)
    wait_for(lambda: image_services.images_sweep()["failed"] == 1, 15, interval=0.5)
    image.refresh_from_db()
    assert image.phase == ImagePhase.FAILED
    assert "interrupted 1 time (its worker stopped)" in image.message
    assert files(image_dir) == []
    assert not Reservation.objects.filter(ref=image.quota_ref, released__isnull=True).exists()
    assert Quota.objects.get(tenant=demo.acme).used_storage == 0
