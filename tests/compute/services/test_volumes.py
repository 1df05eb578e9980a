"""Volumes on libvirt's test driver through a real Celery worker: create, attach,
detach, resize, delete, quota charged and released exactly once, bad input refused."""

from __future__ import annotations

import libvirt
import pytest
from django.db.models import Sum

from compute.backends.libvirt import xml
from compute.backends.libvirt.backend import shared_connection
from compute.choices import Phase, VolumePhase
from compute.models import VirtualMachine, Volume
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from monitoring.models import Event
from portal.exceptions import Conflict, NotFound, PermissionDenied, QuotaExceeded, ValidationError
from tenants import services as tenant_services
from tenants.models import Quota, Reservation
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.conftest import wait_for

pytestmark = pytest.mark.libvirt_test_driver
POOL = "isotope-volumes"


def fresh(volume) -> Volume:
    return Volume.objects.select_related("vm", "host", "tenant").get(pk=volume.pk)


def wait_volume(volume, phase: str, timeout: float = 15, **fields) -> Volume:
    def done():
        found = Volume.objects.filter(pk=volume.pk).first()
        return (
            found is not None
            and found.phase == phase
            and all(getattr(found, k) == v for k, v in fields.items())
        )

    wait_for(done, timeout, message=f"{volume.name} did not reach {phase} {fields}")
    return fresh(volume)


def pool_volumes(host) -> list[str]:
    pool = shared_connection(host.uri).storagePoolLookupByName(POOL)
    pool.refresh(0)
    return pool.listVolumes()


def config_disks(host, vm) -> dict:
    domain = shared_connection(host.uri).lookupByName(vm.domain_name)
    text = domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    return {d.device: d for d in xml.volume_disks(text)}


def used_storage(tenant) -> int:
    return Quota.objects.get(tenant=tenant).used_storage


def running_vm(demo, name="web1", **kwargs) -> VirtualMachine:
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256, **kwargs
    )
    return wait_phase(vm, Phase.RUNNING)


# --- Create, attach, detach, resize, delete --------------------------------------------
def test_a_volume_is_created_attached_grown_detached_and_deleted_with_quota_exact(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    assert host.can("volumes") and host.storage_gib > 0
    vm = running_vm(demo)
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="data1", size_gib=5
    )
    assert volume.phase == VolumePhase.PENDING and volume.host == host
    assert used_storage(demo.acme) == 5  # charged in the creating transaction
    volume = wait_volume(volume, VolumePhase.READY)
    assert volume.capacity_gib == 5
    assert volume.backend_name in pool_volumes(host)

    volume = volume_services.volume_attach(actor=demo.bob, volume=volume, vm=vm)
    assert volume.device == "vdb"
    volume = wait_volume(volume, VolumePhase.ATTACHED)
    disk = config_disks(host, vm)["vdb"]
    assert (disk.pool, disk.volume, disk.serial) == (POOL, volume.backend_name, volume.serial)
    assert Event.objects.filter(kind="vm", name="web1", reason="VolumeAttached").exists()

    volume = volume_services.volume_resize(actor=demo.bob, volume=volume, size_gib=8)
    assert used_storage(demo.acme) == 8
    wait_for(lambda: fresh(volume).capacity_gib == 8, 15, message="never grew")
    assert fresh(volume).phase == VolumePhase.ATTACHED
    assert Event.objects.filter(kind="volume", name="data1", reason="Resized").exists()

    volume = volume_services.volume_detach(actor=demo.bob, volume=fresh(volume))
    volume = wait_volume(volume, VolumePhase.READY, attached_domain="")
    assert "vdb" not in config_disks(host, vm)
    assert volume.vm is None and volume.device == ""

    volume_services.volume_delete(actor=demo.alice, volume=volume)
    wait_for(lambda: not Volume.objects.filter(pk=volume.pk).exists(), 15)
    assert volume.backend_name not in pool_volumes(host)
    assert used_storage(demo.acme) == 0
    released = Reservation.objects.filter(ref=volume.quota_ref, released__isnull=False)
    assert released.count() == 2  # the first size and the grown one, each released once
    assert not Reservation.objects.filter(ref=volume.quota_ref, released__isnull=True).exists()
    # Finalising again (a redelivered task) releases nothing twice.
    volume_services.volume_finalize_delete(volume)
    assert used_storage(demo.acme) == 0
    reasons = list(
        Event.objects.filter(kind="volume", name="data1")
        .order_by("first_seen")
        .values_list("reason", flat=True)
    )
    for reason in ("Accepted", "Created", "Attaching", "Attached", "Resizing", "Resized"):
        assert reason in reasons
    assert reasons[-1] == "Deleted"


def test_a_volume_attached_to_a_stopped_vm_is_in_its_definition_and_boots_with_it(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="cold",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        start=False,
    )
    vm = wait_phase(vm, Phase.STOPPED)
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="logs", size_gib=1, vm=vm
    )
    volume = wait_volume(volume, VolumePhase.ATTACHED)
    assert volume.device == "vdb" and "vdb" in config_disks(host, vm)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="start")
    wait_phase(vm, Phase.RUNNING)
    live = shared_connection(host.uri).lookupByName(vm.domain_name).XMLDesc(0)
    assert volume.backend_name in live


# --- Root disks ---------------------------------------------------------------------------
def test_a_vm_root_disk_is_a_volume_charged_once_and_deleted_with_the_vm(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    vm = running_vm(demo, disk_gib=3)
    root = Volume.objects.get(vm=vm)
    assert (root.name, root.device, root.size_gib) == ("web1-root", "vda", 3)
    assert root.delete_with_vm
    root = wait_volume(root, VolumePhase.ATTACHED)
    assert config_disks(host, vm)["vda"].volume == root.backend_name
    # Charged once: on the volume, not on the VM.
    assert used_storage(demo.acme) == 3
    assert Reservation.objects.get(ref=vm.quota_ref, released__isnull=True).storage == 0
    assert Reservation.objects.get(ref=root.quota_ref, released__isnull=True).storage == 3
    # Resizing the stopped VM re-charges CPU and memory, not its disk a second time.
    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    vm = wait_phase(vm, Phase.STOPPED)
    vm_services.vm_update(actor=demo.bob, vm=vm, vcpus=2)
    assert used_storage(demo.acme) == 3
    data = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="keep", size_gib=2, vm=vm
    )
    wait_volume(data, VolumePhase.ATTACHED)
    with pytest.raises(Conflict, match="root disk"):
        volume_services.volume_detach(actor=demo.bob, volume=fresh(root))

    vm_services.vm_delete(actor=demo.bob, vm=VirtualMachine.objects.get(pk=vm.pk))
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 15)
    assert not Volume.objects.filter(pk=root.pk).exists()
    assert root.backend_name not in pool_volumes(host)
    data = wait_volume(data, VolumePhase.READY)
    assert data.vm is None and data.backend_name in pool_volumes(host)
    assert used_storage(demo.acme) == 2  # the data volume's, and nothing else
    quota = Quota.objects.get(tenant=demo.acme)
    assert (quota.used_cpu, quota.used_memory, quota.used_vms) == (0, 0, 0)


def test_a_vm_boots_from_an_existing_volume_which_outlives_it(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host()
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="system", size_gib=4
    )
    volume = wait_volume(volume, VolumePhase.READY)
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="fromvol",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        root_volume="system",
    )
    assert vm.disk_gib == 4 and vm.host == host
    wait_phase(vm, Phase.RUNNING)
    assert config_disks(host, vm)["vda"].volume == volume.backend_name
    assert fresh(volume).phase == VolumePhase.ATTACHED and not fresh(volume).delete_with_vm
    assert used_storage(demo.acme) == 4
    # A volume in use cannot boot a second VM.
    with pytest.raises(Conflict):
        vm_services.vm_create(
            actor=demo.bob,
            tenant=demo.acme,
            name="twin",
            image="tiny",
            vcpus=1,
            memory_mib=256,
            root_volume="system",
        )
    assert not VirtualMachine.objects.filter(name="twin").exists()

    vm_services.vm_delete(actor=demo.bob, vm=VirtualMachine.objects.get(pk=vm.pk))
    wait_for(lambda: not VirtualMachine.objects.filter(pk=vm.pk).exists(), 15)
    volume = wait_volume(volume, VolumePhase.READY)
    assert volume.backend_name in pool_volumes(host)
    assert used_storage(demo.acme) == 4


# --- Refusals --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "Data"}, "name"),
        ({"name": "-data"}, "name"),
        ({"name": "new"}, "name"),
        ({"name": "x" * 64}, "name"),
        ({"name": "bad name"}, "name"),
        ({"size_gib": 0}, "size_gib"),
        ({"size_gib": -5}, "size_gib"),
        ({"size_gib": "ten"}, "size_gib"),
        ({"size_gib": 1.5}, "size_gib"),
        ({"size_gib": True}, "size_gib"),
        ({"size_gib": None}, "size_gib"),
        ({"size_gib": 10**6}, "size_gib"),
        ({"storage_class": "nfs"}, "storage_class"),
        ({"format": "vmdk"}, "format"),
        ({"image": "no-such-image"}, "image"),
        ({"image": "tiny"}, "image"),  # a kernel image has no disk to copy
        ({"labels": ["a"]}, "labels"),
    ],
)
def test_bad_volume_input_is_a_field_error_and_changes_nothing(
    demo, make_host, tiny_image, kwargs, field
):
    make_host()
    args = {"name": "data", "size_gib": 1, **kwargs}
    with pytest.raises(ValidationError) as caught:
        volume_services.volume_create(actor=demo.bob, tenant=demo.acme, **args)
    assert field in caught.value.errors
    assert not Volume.objects.exists()
    assert used_storage(demo.acme) == 0
    assert not Reservation.objects.exists()


def test_a_taken_name_is_refused_and_the_first_volume_is_untouched(demo, make_host):
    make_host()
    first = volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name="d", size_gib=1)
    with pytest.raises(ValidationError) as caught:
        volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name="d", size_gib=2)
    assert "name" in caught.value.errors
    assert list(Volume.objects.values_list("pk", "size_gib")) == [(first.pk, 1)]
    assert used_storage(demo.acme) == 1
    # Another tenant may use the same name.
    volume_services.volume_create(actor=demo.dave, tenant=demo.globex, name="d", size_gib=1)


def test_a_volume_over_the_storage_quota_is_refused_with_what_is_left(
    demo, make_host, celery_worker
):
    make_host()
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"storage": 10})
    volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name="a", size_gib=6)
    with pytest.raises(QuotaExceeded) as caught:
        volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name="b", size_gib=5)
    assert caught.value.resource == "storage" and caught.value.left == 4
    assert not Volume.objects.filter(name="b").exists()
    assert used_storage(demo.acme) == 6
    assert Event.objects.filter(name="b", reason="QuotaExceeded", type="Warning").exists()
    volume = wait_volume(Volume.objects.get(name="a"), VolumePhase.READY)
    with pytest.raises(QuotaExceeded):
        volume_services.volume_resize(actor=demo.bob, volume=volume, size_gib=11)
    assert fresh(volume).size_gib == 6 and used_storage(demo.acme) == 6


def test_shrinking_is_refused_and_changes_nothing(demo, make_host, celery_worker):
    make_host()
    volume = volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name="a", size_gib=4)
    volume = wait_volume(volume, VolumePhase.READY)
    version = volume.resource_version
    for size in (4, 3, 0, "big"):
        with pytest.raises(ValidationError) as caught:
            volume_services.volume_resize(actor=demo.bob, volume=volume, size_gib=size)
        assert "size_gib" in caught.value.errors
    volume = fresh(volume)
    assert (volume.size_gib, volume.capacity_gib, volume.resource_version) == (4, 4, version)
    assert used_storage(demo.acme) == 4


def test_attach_refusals_another_tenants_vm_twice_busy_and_other_host(
    demo, make_host, tiny_image, celery_worker
):
    host = make_host("h1")
    vm = running_vm(demo)
    theirs = vm_services.vm_create(
        actor=demo.dave, tenant=demo.globex, name="theirs", image="tiny", vcpus=1, memory_mib=256
    )
    theirs = wait_phase(theirs, Phase.RUNNING)
    volume = volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name="d", size_gib=1)
    volume = wait_volume(volume, VolumePhase.READY)

    with pytest.raises(NotFound):
        volume_services.volume_attach(actor=demo.bob, volume=volume, vm=theirs)
    assert fresh(volume).vm is None

    volume_services.volume_attach(actor=demo.bob, volume=volume, vm=vm)
    with pytest.raises(Conflict, match="attached to web1 already"):
        volume_services.volume_attach(actor=demo.bob, volume=fresh(volume), vm=vm)
    wait_volume(volume, VolumePhase.ATTACHED)
    with pytest.raises(Conflict, match="detach it first"):
        volume_services.volume_delete(actor=demo.alice, volume=fresh(volume))

    other = volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name="e", size_gib=1)
    wait_volume(other, VolumePhase.READY)
    with pytest.raises(ValidationError):
        volume_services.volume_attach(actor=demo.bob, volume=other, vm=vm, device="vda")
    with pytest.raises(Conflict, match="vdb of web1 is taken"):
        volume_services.volume_attach(actor=demo.bob, volume=other, vm=vm, device="vdb")

    # A volume on another host does not reach this VM.
    make_host("h2")
    Volume.objects.filter(pk=other.pk).update(host=make_host("h3"))
    with pytest.raises(Conflict, match="another host"):
        volume_services.volume_attach(actor=demo.bob, volume=fresh(other), vm=vm)
    assert fresh(other).vm is None and host.pk == vm.host_id


def test_roles_viewers_read_operators_attach_admins_delete(demo, make_host, tiny_image):
    make_host()
    with pytest.raises(PermissionDenied):
        volume_services.volume_create(actor=demo.carol, tenant=demo.acme, name="v", size_gib=1)
    volume = volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name="v", size_gib=1)
    with pytest.raises(PermissionDenied):
        volume_services.volume_resize(actor=demo.carol, volume=volume, size_gib=2)
    with pytest.raises(PermissionDenied):
        volume_services.volume_delete(actor=demo.bob, volume=volume)
    with pytest.raises(PermissionDenied):
        volume_services.volume_create(actor=demo.dave, tenant=demo.acme, name="w", size_gib=1)
    assert list(Volume.objects.values_list("name", flat=True)) == ["v"]
    assert volume_services.allowed_actions(volume, "viewer") == []


def test_volume_storage_quota_adds_up_with_vm_disks(demo, make_host, tiny_image, celery_worker):
    make_host()
    running_vm(demo, disk_gib=2)
    volume_services.volume_create(actor=demo.bob, tenant=demo.acme, name="x", size_gib=3)
    live = Reservation.objects.filter(tenant=demo.acme, released__isnull=True)
    assert live.aggregate(s=Sum("storage"))["s"] == used_storage(demo.acme) == 5


def test_a_volume_whose_task_was_lost_is_driven_again_by_the_sweep(
    demo, make_host, settings, celery_worker
):
    from datetime import timedelta

    from django.core.cache import cache
    from django.utils import timezone

    make_host()
    settings.ISOTOPE_STUCK_SECONDS = 1
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="lost", size_gib=1
    )
    volume = wait_volume(volume, VolumePhase.READY)
    # Its task writes Ready before it lets go of the volume: wait for it to finish.
    wait_for(lambda: cache.get(f"isotope:volume-lock:{volume.pk}") is None)
    # Pretend its worker died: back to Pending, as if the task never ran, long ago.
    old = timezone.now() - timedelta(seconds=30)
    Volume.objects.filter(pk=volume.pk).update(phase=VolumePhase.PENDING, updated=old)
    fresh_one = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="fresh", size_gib=1
    )
    assert volume_services.volumes_redrive() == [volume.pk]  # not the one just made
    wait_volume(volume, VolumePhase.READY)
    wait_volume(fresh_one, VolumePhase.READY)
    assert volume_services.volumes_stale() == []


# --- A delete asked while a task is on its way ------------------------------------------
def test_a_delete_asked_while_the_volume_is_created_is_not_undone_by_the_create(demo, make_host):
    """Bob's volume is being created when alice deletes it. The create's task ends
    after the delete: its "Created" wrote Ready over Deleting, and the delete's task
    then found a Ready volume and left it, so the volume, its storage and its quota
    charge stayed. The delete stands now, and its task removes what the create made."""
    from compute.backends import backend_for_host
    from compute.tasks import volumes as volume_tasks

    host = make_host()
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="brief", size_gib=2
    )
    acted = volume_tasks._load(volume.pk)  # the create's task has read it (Pending)
    volume_services.volume_delete(actor=demo.alice, volume=fresh(volume))
    volume_tasks._converge(acted, backend_for_host(host), {"record": volume_services.volume_fail})
    assert fresh(volume).phase == VolumePhase.DELETING
    assert volume.backend_name in pool_volumes(host)  # made, until the delete's task runs

    volume_tasks.volume_apply.apply(args=(volume.pk,)).get()
    assert not Volume.objects.filter(pk=volume.pk).exists()
    assert volume.backend_name not in pool_volumes(host)
    assert used_storage(demo.acme) == 0
    reasons = list(
        Event.objects.filter(kind="volume", name="brief")
        .order_by("first_seen")
        .values_list("reason", flat=True)
    )
    assert "Created" not in reasons and reasons[-1] == "Deleted", reasons


def test_a_create_that_fails_after_the_delete_was_asked_leaves_the_delete_to_run(demo, make_host):
    """The create's failure ends after the delete was asked: Failed over Deleting made
    the delete's task take the volume for one to create again. Only a failure of the
    deletion itself turns a Deleting volume Failed (a person may delete it again)."""
    from compute.tasks import volumes as volume_tasks

    make_host()
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="brief", size_gib=1
    )
    acted = volume_tasks._load(volume.pk)
    volume_services.volume_delete(actor=demo.alice, volume=fresh(volume))
    volume_services.volume_fail(acted, "the image could not be read")
    assert fresh(volume).phase == VolumePhase.DELETING
    assert fresh(volume).message == ""

    volume_services.volume_delete_failed(fresh(volume), "the pool is gone")
    failed = fresh(volume)
    assert (failed.phase, failed.message) == (VolumePhase.FAILED, "the pool is gone")
    volume_services.volume_delete(actor=demo.alice, volume=failed)  # allowed again
    assert fresh(volume).phase == VolumePhase.DELETING


def test_a_resize_that_fails_leaves_a_larger_one_asked_since_to_its_own_task(demo, make_host):
    """Bob grows a 10 GiB volume to 150 while his pool has 100 free, then, before that
    grow has failed, to 160. The first failure put the volume back to 10 GiB: the 160
    he had asked for (and its quota charge) was dropped without a word, and its task
    then found nothing to do. The newer size stands until its own grow is tried."""
    from compute.backends import BackendError, backend_for_host
    from compute.tasks import volumes as volume_tasks

    host = make_host()
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"storage": 500})
    volume = volume_services.volume_create(
        actor=demo.bob, tenant=demo.acme, name="big", size_gib=10
    )
    volume_tasks.volume_apply.apply(args=(volume.pk,)).get()
    volume = wait_volume(volume, VolumePhase.READY)

    volume_services.volume_resize(actor=demo.bob, volume=volume, size_gib=150)
    acted = volume_tasks._load(volume.pk)  # the first grow's task has read it
    volume_services.volume_resize(actor=demo.bob, volume=fresh(volume), size_gib=160)
    step = {"record": volume_services.volume_fail}
    with pytest.raises(BackendError) as caught:  # as volume_apply runs it
        volume_tasks._converge(acted, backend_for_host(host), step)
    step["record"](volume_tasks._load(volume.pk), str(caught.value))
    asked = fresh(volume)
    assert (asked.size_gib, asked.capacity_gib, asked.phase) == (160, 10, VolumePhase.READY)
    assert used_storage(demo.acme) == 160
    warning = Event.objects.get(kind="volume", name="big", reason="ResizeFailed")
    assert warning.message.startswith("Could not grow to 150 GiB: ")
    assert volume.backend_name in pool_volumes(host)  # the storage is still there

    volume_tasks.volume_apply.apply(args=(volume.pk,))  # the 160's own task: no room
    failed = fresh(volume)
    assert (failed.size_gib, failed.capacity_gib) == (10, 10)
    assert failed.message.startswith("Could not grow: ")
    assert used_storage(demo.acme) == 10
    assert volume.backend_name in pool_volumes(host)


def test_a_root_disk_that_cannot_grow_shows_its_real_size_on_its_vm_too(
    demo, make_host, tiny_image, celery_worker
):
    """The VM's spec shows its root disk's size: a failed grow put the volume back
    to 3 GiB but left the VM saying 150."""
    make_host()
    tenant_services.quota_set(actor=None, tenant=demo.acme, limits={"storage": 500})
    vm = running_vm(demo, disk_gib=3)
    vm_services.vm_action(actor=demo.bob, vm=vm, action="force-stop")
    vm = wait_phase(vm, Phase.STOPPED)
    root = wait_volume(Volume.objects.get(vm=vm), VolumePhase.ATTACHED)
    volume_services.volume_resize(actor=demo.bob, volume=root, size_gib=150)
    assert VirtualMachine.objects.get(pk=vm.pk).disk_gib == 150  # while it grows
    root = wait_volume(root, VolumePhase.ATTACHED, size_gib=3)
    assert root.message.startswith("Could not grow: ")
    assert VirtualMachine.objects.get(pk=vm.pk).disk_gib == 3
    assert used_storage(demo.acme) == 3
