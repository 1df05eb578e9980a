"""Kubernetes volumes on the real API server: a volume of the cluster class is a
PersistentVolumeClaim bound for real (to the PersistentVolume the portal makes for it,
by the cluster's own binder), a Deployment's pods mount it, the namespace quota
mirrors the tenant's storage limit, and VM disks and claims share that one quota."""

from __future__ import annotations

import pytest
from kubernetes import client

from compute.choices import Phase, StorageClass, VolumePhase
from compute.models import Volume, Workload
from compute.services import vms as vm_services
from compute.services import volumes as volume_services
from compute.services import workloads as workload_services
from compute.services.clusters import tenant_provision
from portal.exceptions import Conflict, QuotaExceeded, ValidationError
from tenants.models import Quota, Reservation
from tests.conftest import wait_for

pytestmark = [pytest.mark.kubernetes, pytest.mark.django_db(transaction=True)]


def used_storage(tenant) -> int:
    return Quota.objects.get(tenant=tenant).used_storage


def claim(tenant, name: str, size: int = 2) -> Volume:
    return volume_services.volume_create(
        actor=None, tenant=tenant, name=name, size_gib=size, storage_class=StorageClass.CLUSTER
    )


def ready(volume, timeout: float = 60) -> Volume:
    def done():
        found = Volume.objects.filter(pk=volume.pk).first()
        return found if found and found.phase == VolumePhase.READY else None

    return wait_for(done, timeout, 0.2, message=f"{volume.name} was never bound")


def test_a_claim_is_bound_mounted_by_a_deployment_and_deleted_with_quota_once(
    make_tenant, kube, celery_worker, watcher
):
    tenant = make_tenant()
    volume = claim(tenant, "data", size=3)
    assert used_storage(tenant) == 3
    volume = ready(volume)
    assert volume.capacity_gib == 3

    pvc = kube.core.read_namespaced_persistent_volume_claim("data", tenant.namespace)
    assert pvc.status.phase == "Bound" and pvc.spec.storage_class_name == "isotope-local"
    assert pvc.spec.resources.requests["storage"] == "3Gi"
    pv = kube.core.read_persistent_volume(pvc.spec.volume_name)
    assert pv.status.phase == "Bound"
    assert (pv.spec.claim_ref.namespace, pv.spec.claim_ref.name) == (tenant.namespace, "data")
    assert pv.spec.host_path.path.endswith(f"/{tenant.namespace}/data")
    # The namespace's quota mirrors the tenant's storage limit and counts the claim.
    quota = kube.core.read_namespaced_resource_quota("isotope-quota", tenant.namespace)
    assert quota.spec.hard["requests.storage"] == "200Gi"
    wait_for(
        lambda: (
            (
                kube.core.read_namespaced_resource_quota(
                    "isotope-quota", tenant.namespace
                ).status.used
                or {}
            ).get("requests.storage")
            == "3Gi"
        ),
        30,
        0.5,
        message="the namespace quota never counted the claim",
    )

    workload = workload_services.workload_create(
        actor=None,
        tenant=tenant,
        name="db",
        image="registry.invalid/isotope/db:1",
        replicas=1,
        cpu_request="100m",
        memory_request="64Mi",
        volumes=[{"volume": "data", "mountPath": "/var/lib/db", "readOnly": False}],
    )
    wait_for(lambda: Workload.objects.get(pk=workload.pk).phase == Phase.RUNNING, 60, 0.2)
    pods = kube.core.list_namespaced_pod(
        tenant.namespace, label_selector="isotope.dev/workload=db"
    ).items
    assert len(pods) == 1 and pods[0].status.phase == "Running"
    volumes = {v.name: v for v in pods[0].spec.volumes}
    mounts = {m.name: m for m in pods[0].spec.containers[0].volume_mounts}
    (name,) = [n for n, v in volumes.items() if v.persistent_volume_claim]
    assert volumes[name].persistent_volume_claim.claim_name == "data"
    assert mounts[name].mount_path == "/var/lib/db"

    # In use: not deletable.
    with pytest.raises(Conflict, match="mounted by db"):
        volume_services.volume_delete(actor=None, volume=volume)
    workload_services.workload_delete(actor=None, workload=Workload.objects.get(pk=workload.pk))
    wait_for(lambda: not Workload.objects.filter(pk=workload.pk).exists(), 90, 0.2)

    volume_services.volume_delete(actor=None, volume=Volume.objects.get(pk=volume.pk))
    wait_for(lambda: not Volume.objects.filter(pk=volume.pk).exists(), 60, 0.2)
    assert not kube.core.list_namespaced_persistent_volume_claim(tenant.namespace).items
    names = [v.metadata.name for v in kube.core.list_persistent_volume().items]
    assert pv.metadata.name not in names
    assert used_storage(tenant) == 0
    assert Reservation.objects.filter(ref=volume.quota_ref, released__isnull=False).count() == 1


def test_vm_disks_and_claims_share_the_one_storage_quota(
    make_tenant, make_host, tiny_image, kube, celery_worker
):
    make_host("node-a")
    tenant = make_tenant(quota={"storage": 5})
    vm_services.vm_create(
        actor=None, tenant=tenant, name="vm1", image="tiny", vcpus=1, memory_mib=256, disk_gib=3
    )
    assert used_storage(tenant) == 3
    with pytest.raises(QuotaExceeded) as caught:
        claim(tenant, "big", size=3)
    assert caught.value.resource == "storage" and caught.value.left == 2
    assert not Volume.objects.filter(name="big").exists()
    small = ready(claim(tenant, "small", size=2))
    assert used_storage(tenant) == 5
    quota = kube.core.read_namespaced_resource_quota("isotope-quota", tenant.namespace)
    assert quota.spec.hard["requests.storage"] == "5Gi"
    assert kube.core.read_namespaced_persistent_volume_claim("small", tenant.namespace)
    assert small.capacity_gib == 2


def test_a_claim_beyond_the_namespace_quota_is_refused_by_the_api_server_and_released(
    make_tenant, cluster, kube, celery_worker
):
    """The namespace quota is the backstop: here someone else's claim fills it first."""
    tenant = make_tenant(quota={"storage": 4})
    tenant_provision(tenant=tenant, cluster=cluster)

    kube.core.create_namespaced_persistent_volume_claim(
        tenant.namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="outside"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name="isotope-local",
                resources=client.V1VolumeResourceRequirements(requests={"storage": "3Gi"}),
            ),
        ),
    )
    volume = claim(tenant, "mine", size=2)
    wait_for(lambda: Volume.objects.get(pk=volume.pk).phase == VolumePhase.FAILED, 60, 0.2)
    volume = Volume.objects.get(pk=volume.pk)
    assert "exceeded quota" in volume.message
    assert used_storage(tenant) == 0  # released, once
    volume_services.volume_delete(actor=None, volume=volume)
    wait_for(lambda: not Volume.objects.filter(pk=volume.pk).exists(), 60, 0.2)
    assert used_storage(tenant) == 0


def test_bad_mounts_are_refused_and_create_nothing(make_tenant, make_host, tiny_image):
    make_host("node-a")
    tenant = make_tenant()
    claim(tenant, "data")
    volume_services.volume_create(actor=None, tenant=tenant, name="disk", size_gib=1)
    for mounts, why in [
        ([{"volume": "nope", "mountPath": "/d"}], "No volume named"),
        ([{"volume": "disk", "mountPath": "/d"}], "local VM disk"),
        ([{"volume": "data", "mountPath": "relative"}], "absolute path"),
        ([{"volume": "data", "mountPath": "/a/../etc"}], "absolute path"),
        ([{"volume": "data", "mountPath": "/a"}, {"volume": "data", "mountPath": "/b"}], "twice"),
        ([{"volume": "data", "mountPath": "/a", "subPath": "x"}], "Each mount"),
        ("data:/a", "A list"),
    ]:
        with pytest.raises(ValidationError) as caught:
            workload_services.workload_create(
                actor=None, tenant=tenant, name="web", image="nginx:1", volumes=mounts
            )
        assert why in " ".join(caught.value.errors["volumes"]), caught.value.errors
    assert not Workload.objects.exists()
