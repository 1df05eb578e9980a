"""qemu tier: the tiny guest's real disk image, imported over HTTP into the shared image
directory, is the base of a VM that runs on libvirt node1 (QEMU opens the imported file
as the backing file of the VM's own overlay)."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from compute.backends.libvirt.backend import shared_connection
from compute.choices import ImagePhase, Phase
from compute.models import Image, Volume
from compute.services import images as image_services
from compute.services import vms as vm_services
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.test_qemu_vms import node1  # noqa: F401 - fixture
from tests.conftest import require, wait_for
from tools.infra import read_state

pytestmark = pytest.mark.qemu


@pytest.fixture
def shared_image_dir(settings):
    """A directory under /var/lib/isotope/images (both nodes read it); removed after."""
    root = Path("/var/lib/isotope/images") / f"test-{secrets.token_hex(4)}"
    settings.ISOTOPE_IMAGE_DIR = str(root)
    settings.ISOTOPE_IMAGE_URL_ALLOW = ["127.0.0.1/32"]
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_a_vm_runs_on_an_imported_copy_of_the_tiny_guest_disk(
    demo,
    node1,  # noqa: F811 - the fixture imported above
    shared_image_dir,
    file_server,
    celery_worker,  # noqa: F811
):
    state = read_state("image")
    require(state.get("disk"), "the tiny guest has no disk image")
    source = Path(state["disk"])
    image = image_services.image_import_url(
        actor=demo.bob,
        tenant=demo.acme,
        name="tiny-disk",
        url=file_server.add("/disk.qcow2", source),
    )
    wait_for(lambda: Image.objects.get(pk=image.pk).phase == ImagePhase.READY, 60)
    image.refresh_from_db()
    assert Path(image.disk_path).parent == shared_image_dir / "tenants" / "acme"

    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name=f"qi-{secrets.token_hex(3)}",
        image="tiny-disk",
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
    )
    vm = wait_phase(vm, Phase.RUNNING, timeout=90)
    domain = shared_connection(node1.uri).lookupByName(vm.domain_name)
    assert domain.isActive()
    # Its root disk is a volume in node1's pool: an overlay over the imported image.
    root = Volume.objects.get(vm=vm, device="vda")
    pool = shared_connection(node1.uri).storagePoolLookupByName(root.pool)
    overlay = pool.storageVolLookupByName(root.backend_name).path()
    chain = json.loads(
        subprocess.run(
            ["qemu-img", "info", "-U", "--backing-chain", "--output=json", overlay],
            check=True,
            capture_output=True,
        ).stdout
    )
    assert [layer["filename"] for layer in chain] == [overlay, image.disk_path]

    vm_services.vm_delete(actor=demo.bob, vm=vm)
    wait_for(lambda: not image.vms.exists(), 60)
    image_services.image_delete(actor=demo.alice, image=image)
