"""Imports through a real Celery worker (queue ``storage``), a VM from the imported image
on libvirt's test driver, live progress in the resync snapshot, and failures injected
in the middle of an import (failpoints) that leave nothing behind."""

from __future__ import annotations

import os

import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import ImagePhase, Phase
from compute.models import Image
from compute.services import images as image_services
from compute.services import vms as vm_services
from monitoring import live
from portal import failpoints
from portal.exceptions import ValidationError
from tenants.models import Quota, Reservation
from tests.compute.images.conftest import Route, make_qcow2, sha256
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.conftest import wait_for

pytestmark = [pytest.mark.libvirt_test_driver]


def image_phase(image: Image, phase: str, timeout: float = 30) -> Image:
    wait_for(
        lambda: Image.objects.get(pk=image.pk).phase == phase,
        timeout,
        message=f"{image.name} did not reach {phase}: {Image.objects.get(pk=image.pk).message}",
    )
    return Image.objects.get(pk=image.pk)


def test_an_imported_image_boots_a_vm_on_the_test_driver(
    demo, image_dir, file_server, tmp_path, make_host, flavors, celery_worker
):
    host = make_host()
    source = make_qcow2(tmp_path / "base.qcow2", size="1G")
    url = file_server.add("/base.qcow2", source)
    image = image_services.image_import_url(
        actor=demo.bob, tenant=demo.acme, name="base", url=url, sha256=sha256(source)
    )
    image = image_phase(image, ImagePhase.READY)
    # The live state is stored just after the worker's commit (on_commit): wait for it.
    wait_for(
        lambda: (
            (s := live.state_snapshot("acme", "image", "base")) and s[0]["data"]["phase"] == "Ready"
        ),
        10,
        message=f"the live state stayed {live.state_snapshot('acme', 'image', 'base')}",
    )
    snapshot = live.state_snapshot("acme", "image", "base")
    assert snapshot[0]["data"]["progress"]["percent"] == 100

    # The VM form lists it; a VM from it gets an overlay over the imported file.
    from compute import selectors

    assert image in selectors.images_for_tenant(demo.acme)
    assert image not in selectors.images_for_tenant(demo.globex)
    with pytest.raises(ValidationError) as refused:
        vm_services.vm_create(
            actor=demo.bob, tenant=demo.acme, name="vm1", image="base", vcpus=1, memory_mib=256
        )
    assert refused.value.errors["disk_gib"] == ["base needs a disk of at least 1 GiB."]
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="vm1", image="base", flavor="small"
    )
    vm = wait_phase(vm, Phase.RUNNING, timeout=45)
    domain = shared_connection(host.uri).lookupByName(vm.domain_name)
    assert "<disk" in domain.XMLDesc(0)
    assert Quota.objects.get(tenant=demo.acme).used_storage == 1 + 1  # image + VM disk

    # An image in use cannot be deleted; once the VM is gone it can.
    from portal.exceptions import Conflict

    with pytest.raises(Conflict, match="base of VM vm1"):
        image_services.image_delete(actor=demo.alice, image=image)
    vm_services.vm_delete(actor=demo.bob, vm=vm)
    wait_for(lambda: not image.vms.exists(), 15)
    image_services.image_delete(actor=demo.alice, image=image)
    assert not (image_dir / "tenants" / "acme" / f"{image.uid}.qcow2").exists()
    assert Quota.objects.get(tenant=demo.acme).used_storage == 0


def test_progress_is_pushed_while_a_slow_download_runs(
    demo, image_dir, file_server, tmp_path, celery_worker
):
    body = os.urandom(4 * 1024 * 1024)  # a raw disk full of data: 64 blocks, 3 s
    url = file_server.add("/slow.raw", Route(body=body, delay=0.05))
    image = image_services.image_import_url(actor=demo.bob, tenant=demo.acme, name="slow", url=url)
    seen = []

    def progressing():
        state = live.state_snapshot("acme", "image", "slow")
        if state:
            progress = state[0]["data"]["progress"]
            fresh = not seen or progress["bytes"] != seen[-1]["bytes"]
            if state[0]["data"]["phase"] == "Importing" and 0 < progress["bytes"] < len(body):
                if fresh:
                    seen.append(progress)
        return len(seen) >= 3

    wait_for(progressing, 30, interval=0.1, message="no download progress was published")
    assert seen[-1]["total"] == len(body)
    assert seen[-1]["rate"] > 0  # bytes per second over the last seconds
    assert [p["bytes"] for p in seen] == sorted(p["bytes"] for p in seen)
    image_phase(image, ImagePhase.READY)


@pytest.mark.parametrize("point", ["image.after_fetch", "image.after_convert"])
def test_an_error_mid_import_fails_it_and_leaves_nothing(
    demo, image_dir, file_server, tmp_path, celery_worker, point
):
    url = file_server.add("/a.qcow2", make_qcow2(tmp_path / "a.qcow2"))
    with failpoints.armed(point, "raise"):
        image = image_services.image_import_url(
            actor=demo.bob, tenant=demo.acme, name="boom", url=url, size_bytes=10 * 1024**3
        )
        assert Quota.objects.get(tenant=demo.acme).used_storage == 10
        image = image_phase(image, ImagePhase.FAILED)
    assert "failed unexpectedly" in image.message
    assert [p for p in image_dir.rglob("*") if p.is_file()] == []
    assert Quota.objects.get(tenant=demo.acme).used_storage == 0
    assert not Reservation.objects.filter(ref=image.quota_ref, released__isnull=True).exists()
