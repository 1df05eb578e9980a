"""Platform objects edited in Django admin are audited (who, what, which fields)."""

from __future__ import annotations

import pytest

from compute.models import Flavor, Host, KubernetesCluster
from monitoring import crypto
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
