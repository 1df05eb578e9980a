"""Platform objects edited in Django admin are audited (who, what, which fields); the
admin's actions are audited with their outcome, and what must not be deleted on its
own cannot be."""

from __future__ import annotations

import pytest
from django.utils import timezone

from compute.choices import MigrationPhase
from compute.models import Flavor, Host, KubernetesCluster, Migration, TenantNamespace
from compute.services.vms import vm_create
from monitoring import crypto
from tenants.choices import AuditOutcome
from tenants.models import AuditLog
from tests.compute.test_host_console_ports import change_host
from tests.compute.test_platform_input import kubeconfig
from tests.tenants.test_admin import form_data

pytestmark = pytest.mark.unit


def test_creating_changing_and_deleting_a_flavor_in_admin_is_audited(client, demo):
    client.force_login(demo.admin)
    form = {"name": "xl", "vcpus": 8, "memory_mib": 16384, "disk_gib": 40}
    assert client.post("/admin/compute/flavor/add/", form).status_code == 302
    flavor = Flavor.objects.get(name="xl")
    created = AuditLog.objects.get(action="flavor.create")
    assert created.actor == demo.admin and created.target.startswith("flavor/xl")

    changed = {**form, "memory_mib": 32768}
    assert client.post(f"/admin/compute/flavor/{flavor.pk}/change/", changed).status_code == 302
    update = AuditLog.objects.get(action="flavor.update")
    assert update.detail == {"fields": ["memory_mib"]}

    response = client.post(f"/admin/compute/flavor/{flavor.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Flavor.objects.filter(name="xl").exists()
    assert AuditLog.objects.get(action="flavor.delete").target.startswith("flavor/xl")


def test_putting_a_host_in_maintenance_in_admin_is_audited(client, demo, make_host):
    host = make_host("h1")
    client.force_login(demo.admin)
    page = client.get(f"/admin/compute/host/{host.pk}/change/")
    assert page.status_code == 200
    response = change_host(client, host, maintenance="on")
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Host.objects.get(pk=host.pk).maintenance
    entry = AuditLog.objects.get(action="host.update")
    assert "maintenance" in entry.detail["fields"] and entry.actor == demo.admin


def test_replacing_a_clusters_kubeconfig_in_admin_stores_it_and_is_audited(client, demo):
    cluster = KubernetesCluster.objects.create(
        name="k1",
        server="https://old.example:6443",
        kubeconfig_encrypted=crypto.encrypt("clusters: []", context=crypto.KUBECONFIG),
    )
    client.force_login(demo.admin)
    url = f"/admin/compute/kubernetescluster/{cluster.pk}/change/"
    data = form_data(client.get(url).content.decode(), "kubernetescluster_form")
    data["kubeconfig"] = kubeconfig({"token": "abc"})
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]

    cluster.refresh_from_db()
    assert cluster.server == "https://127.0.0.1:9"
    stored = crypto.decrypt(cluster.kubeconfig_encrypted, context=crypto.KUBECONFIG)
    assert "abc" in stored
    assert AuditLog.objects.get(action="cluster.update").detail == {"fields": ["kubeconfig"]}


# --- Actions and deletions that are audited or refused -----------------------------------
def unreachable_cluster() -> KubernetesCluster:
    return KubernetesCluster.objects.create(
        name="k1",
        server="https://127.0.0.1:9",
        kubeconfig_encrypted=crypto.encrypt(
            kubeconfig({"token": "abc"}), context=crypto.KUBECONFIG
        ),
    )


def test_provisioning_a_namespace_now_in_admin_is_audited_with_its_outcome(client, demo):
    row = TenantNamespace.objects.create(
        tenant=demo.acme, cluster=unreachable_cluster(), name=demo.acme.namespace
    )
    client.force_login(demo.admin)
    response = client.post(
        "/admin/compute/tenantnamespace/",
        {"action": "provision_now", "_selected_action": [row.pk]},
    )
    assert response.status_code == 302
    entry = AuditLog.objects.get(action="namespace.provision")
    assert (entry.actor, entry.tenant, entry.target) == (
        demo.admin,
        demo.acme,
        f"namespace/k1/{demo.acme.namespace}",
    )
    assert entry.outcome == AuditOutcome.FAILED and entry.detail["error"]
    assert not TenantNamespace.objects.get(pk=row.pk).ready


def test_a_tenant_namespace_cannot_be_deleted_on_its_own_in_admin(client, demo):
    row = TenantNamespace.objects.create(
        tenant=demo.acme, cluster=unreachable_cluster(), name=demo.acme.namespace, ready=True
    )
    client.force_login(demo.admin)
    listing = client.get("/admin/compute/tenantnamespace/").content.decode()
    assert 'value="delete_selected"' not in listing
    url = f"/admin/compute/tenantnamespace/{row.pk}/delete/"
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert TenantNamespace.objects.filter(pk=row.pk, ready=True).exists()


def test_checking_an_unreachable_cluster_or_host_in_admin_is_audited_as_failed(
    client, demo, tmp_path
):
    cluster = unreachable_cluster()
    host = Host.objects.create(name="gone", uri=f"test://{tmp_path}/missing.xml")
    client.force_login(demo.admin)
    for url, pk in (
        ("/admin/compute/kubernetescluster/", cluster.pk),
        ("/admin/compute/host/", host.pk),
    ):
        response = client.post(url, {"action": "check_now", "_selected_action": [pk]})
        assert response.status_code == 302
    checked = {e.target: e for e in AuditLog.objects.filter(action__endswith=".check")}
    assert set(checked) == {"cluster/k1", "host/gone"}
    for entry in checked.values():
        assert entry.actor == demo.admin and entry.outcome == AuditOutcome.FAILED
        assert entry.detail["error"]
    assert not Host.objects.get(pk=host.pk).reachable


@pytest.mark.libvirt_test_driver
def test_migration_history_cannot_be_deleted_in_admin(client, demo, make_host, tiny_image):
    source, target = make_host("test1"), make_host("test2", cpus=1, memory_mib=1024)
    vm = vm_create(actor=None, tenant=demo.acme, name="web1", image="tiny", vcpus=1, memory_mib=256)
    migration = Migration.objects.create(
        tenant=demo.acme,
        vm=vm,
        vm_name=vm.name,
        source=source,
        target=target,
        phase=MigrationPhase.RUNNING,
        started=timezone.now(),
    )
    client.force_login(demo.admin)
    listing = client.get("/admin/compute/migration/").content.decode()
    assert 'value="delete_selected"' not in listing
    url = f"/admin/compute/migration/{migration.pk}/delete/"
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert Migration.objects.filter(pk=migration.pk, phase=MigrationPhase.RUNNING).exists()


def test_a_cluster_is_deleted_in_admin_with_its_namespace_rows_and_audited(client, demo):
    """Namespace rows may not be deleted on their own: Django then refused (403) the
    cluster they belong to, which has no workload to protect it."""
    cluster = unreachable_cluster()
    TenantNamespace.objects.create(tenant=demo.acme, cluster=cluster, name=demo.acme.namespace)
    client.force_login(demo.admin)
    url = f"/admin/compute/kubernetescluster/{cluster.pk}/delete/"
    assert client.get(url).status_code == 200
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not KubernetesCluster.objects.filter(pk=cluster.pk).exists()
    assert not TenantNamespace.objects.exists()
    assert AuditLog.objects.get(action="cluster.delete").target == "cluster/k1"
