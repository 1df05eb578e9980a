"""Workload pages: list, create form with quota left and field errors, detail with pods
and events, actions by role, logs that say plainly why there are none, the overview
and dashboard panels, isolation."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from compute.choices import Phase
from compute.models import KubernetesCluster, Workload
from compute.services import workloads as services
from monitoring import crypto
from tenants import services as tenant_services
from tests.page_forms import page_form_data

pytestmark = pytest.mark.unit

LIST = "/t/acme/workloads/"
NEW = "/t/acme/workloads/new/"


@pytest.fixture
def world(demo):
    KubernetesCluster.objects.create(
        name="fake",
        kubeconfig_encrypted=crypto.encrypt("clusters: []", context=crypto.KUBECONFIG),
        default=True,
        capabilities={"logs": False},
    )
    return demo


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form_data(**overrides) -> dict:
    data = {
        "name": "web",
        "kind": "Deployment",
        "image": "nginx:1.27",
        "replicas": "3",
        "cpu_request": "250m",
        "memory_request": "128Mi",
        "cpu_limit": "",
        "memory_limit": "",
        "command": "",
        "args": "",
        "env": "",
        "ports": "",
        "service_type": "",
    }
    data.update(overrides)
    return data


def make(world, name="web", phase=Phase.RUNNING, **kwargs) -> Workload:
    workload = services.workload_create(
        actor=None, tenant=world.acme, name=name, image="nginx:1.27", **kwargs
    )
    Workload.objects.filter(pk=workload.pk).update(
        phase=phase,
        ready_replicas=workload.replicas,
        pods=[
            {
                "name": f"{name}-abc-{i}",
                "phase": "Running",
                "node": "isotope-node-1",
                "restarts": i,
                "ready": True,
                "reason": "",
            }
            for i in range(workload.replicas)
        ],
    )
    workload.refresh_from_db()
    return workload


def test_the_form_shows_the_quota_left_shared_with_vms(world):
    tenant_services.quota_set(actor=None, tenant=world.acme, limits={"cpu": 8, "pods": 10})
    make(world, replicas=2, cpu_request="500m")
    html = client_for(world.bob).get(NEW).content.decode()
    assert "7 of 8 cores left" in html
    assert "8 of 10 pods left" in html
    assert "shared with VMs" in html


def test_creating_from_the_form_redirects_to_the_workload(world):
    response = client_for(world.bob).post(
        NEW,
        form_data(
            env="A=1\nB=two words",
            ports="80, 443",
            service_type="NodePort",
            command='/bin/sh -c "sleep 1d"',
        ),
    )
    assert response.status_code == 302 and response["Location"] == "/t/acme/workloads/web/"
    workload = Workload.objects.get(name="web")
    assert workload.env == {"A": "1", "B": "two words"} and workload.ports == [80, 443]
    assert workload.command == ["/bin/sh", "-c", "sleep 1d"]
    assert (workload.replicas, workload.cpu_request_m, workload.memory_request) == (
        3,
        250,
        128 * 2**20,
    )


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"image": "Not An Image"}, "image"),
        ({"cpu_request": "half"}, "cpu_request"),
        ({"memory_request": "12m"}, "memory_request"),
        ({"name": "n" * 47}, "name"),
        ({"env": "NOEQUALS"}, "env"),
        ({"command": '"unbalanced'}, "command"),
        ({"ports": "http"}, "ports"),
        ({"replicas": "1000"}, "replicas"),
    ],
)
def test_bad_input_is_shown_on_its_field(world, overrides, field):
    response = client_for(world.bob).post(NEW, form_data(**overrides))
    assert response.status_code == 400
    assert f'data-testid="error-{field}"' in response.content.decode()
    assert Workload.objects.count() == 0


def test_a_quota_refusal_is_shown_on_the_cpu_field(world):
    tenant_services.quota_set(actor=None, tenant=world.acme, limits={"cpu": 1})
    response = client_for(world.bob).post(NEW, form_data(replicas="5"))
    html = response.content.decode()
    assert response.status_code == 400 and 'data-testid="error-cpu_request"' in html
    assert "Quota exceeded for cpu: requested 1.25 cores, 1 core left of 1 core." in html


def test_the_list_and_detail_show_phase_ready_pods_and_buttons_by_role(world):
    make(world, replicas=2)
    bob = client_for(world.bob)
    html = bob.get(LIST).content.decode()
    assert 'data-live-kind="workload" data-live-name="web"' in html
    assert "2/2" in html and "250m" not in html  # default request is 100m
    detail = bob.get(f"{LIST}web/").content.decode()
    assert "web-abc-0" in detail and "isotope-node-1" in detail
    assert 'data-live-action="scale"' in detail and 'data-live-action="delete"' in detail
    carol = client_for(world.carol).get(f"{LIST}web/").content.decode()
    assert "web-abc-1" in carol and "data-live-action" not in carol


def test_actions_from_the_page(world):
    make(world, replicas=2)
    bob = client_for(world.bob)
    response = bob.post(f"{LIST}web/scale/", {"replicas": "4"})
    assert response.status_code == 302 and Workload.objects.get().replicas == 4
    confirm = bob.post(f"{LIST}web/delete/")
    assert (
        confirm.status_code == 200
        and 'data-testid="workload-confirm-page"' in confirm.content.decode()
    )
    done = bob.post(f"{LIST}web/delete/", {"confirm": "yes"})
    assert done.status_code == 302 and Workload.objects.get().deleting
    assert (
        client_for(world.carol).post(f"{LIST}web/restart/", {"confirm": "yes"}).status_code == 403
    )


def test_logs_say_plainly_that_kwok_nodes_have_none(world):
    make(world, replicas=1)
    html = client_for(world.carol).get(f"{LIST}web/logs/").content.decode()
    assert "KWOK fake nodes: no container runs on them, so there are no logs" in html


def test_the_overview_and_dashboard_show_vms_and_workloads_together(world):
    make(world, replicas=3)
    bob = client_for(world.bob)
    overview = bob.get("/t/acme/").content.decode()
    assert 'data-testid="workload-summary-counts"' in overview and "3/3" in overview
    dashboard = bob.get("/").content.decode()
    assert 'data-testid="compute-line-acme"' in dashboard
    assert "1</span> workload · 3/3 pods ready" in dashboard


def test_other_tenants_workload_pages_are_404_and_viewers_cannot_create(world):
    make(world, "secret")
    dave = client_for(world.dave)
    for url in (LIST, NEW, f"{LIST}secret/", f"{LIST}secret/logs/"):
        assert dave.get(url).status_code == 404
    assert dave.post(f"{LIST}secret/delete/", {"confirm": "yes"}).status_code == 404
    carol = client_for(world.carol)
    assert carol.get(NEW).status_code == 403
    assert "Create workload" not in carol.get(LIST).content.decode()
    assert Client().get(LIST).status_code == 302


@pytest.mark.parametrize(
    ("who", "status"),
    [("bob", 302), ("alice", 302), ("carol", 403), ("dave", 404), ("anonymous", 302)],
)
def test_who_may_edit_a_workloads_labels(world, who, status):
    workload = make(world, "web", labels={"app": "web"})
    client = Client() if who == "anonymous" else client_for(getattr(world, who))
    response = client.post(f"{LIST}web/labels/", {"labels": "app=api"})
    assert response.status_code == status
    allowed = who in ("bob", "alice")
    assert (Workload.objects.get(pk=workload.pk).labels == {"app": "api"}) == allowed
    if allowed:
        assert response["Location"] == f"{LIST}web/"


def test_an_operator_edits_a_workloads_labels_and_a_viewer_reads_them(world):
    make(world, "web", labels={"app": "web"})
    viewer = client_for(world.carol).get(f"{LIST}web/").content.decode()
    assert "app=web" in viewer and 'data-testid="workload-edit-labels"' not in viewer
    bob = client_for(world.bob)
    page = bob.get(f"{LIST}web/").content.decode()
    assert 'data-testid="workload-edit-labels"' in page
    response = bob.post(f"{LIST}web/labels/", {"labels": "app=api\ntier=front"}, follow=True)
    html = response.content.decode()
    assert "The labels of web are now: app=api, tier=front." in html
    assert "Labels changed to app=api, tier=front by bob." in html  # on its timeline

    refused = bob.post(f"{LIST}web/labels/", {"labels": "app=api\nbad key=1"})
    assert refused.status_code == 400
    assert "Invalid key &#x27;bad key&#x27;" in refused.content.decode()
    assert Workload.objects.get(name="web").labels == {"app": "api", "tier": "front"}


def test_the_admin_never_shows_the_kubeconfig_back(world):
    cluster = KubernetesCluster.objects.get(name="fake")
    admin = client_for(world.admin)
    assert admin.get("/admin/compute/kubernetescluster/").status_code == 200
    page = admin.get(f"/admin/compute/kubernetescluster/{cluster.pk}/change/").content.decode()
    assert "kubeconfig" in page and cluster.kubeconfig_encrypted not in page
    assert "clusters: []" not in page
    assert crypto.decrypt(cluster.kubeconfig_encrypted, context=crypto.KUBECONFIG) == "clusters: []"
    with pytest.raises(crypto.SecretUnreadable):
        crypto.decrypt(cluster.kubeconfig_encrypted)  # the webhook key is another key


def test_the_list_searches_filters_by_phase_and_label_and_sorts_from_the_url(world):
    make(world, "shop", labels={"tier": "web"})
    make(world, "cart", phase=Phase.PENDING, labels={"tier": "web"})
    make(world, "queue", labels={"tier": "jobs"})
    carol = client_for(world.carol)

    def shown(query: str) -> list[str]:
        html = carol.get(LIST + query).content.decode()
        return re.findall(r'data-live-kind="workload" data-live-name="([^"]+)"', html)

    assert shown("") == ["cart", "queue", "shop"]
    assert shown("?q=SH") == ["shop"]
    assert shown("?phase=Running") == ["queue", "shop"]
    assert shown("?label=tier=web&sort=-name") == ["shop", "cart"]
    html = carol.get(LIST + "?q=nothing").content.decode()
    assert 'data-testid="workload-no-match"' in html
    # Bad values: a 400 with the reason, the rest of the list still shown; no host here.
    response = carol.get(LIST + "?phase=Asleep&sort=host")
    assert response.status_code == 400
    html = response.content.decode()
    assert "Unknown phase &#x27;Asleep&#x27;" in html and "Cannot sort by &#x27;host&#x27;" in html
    assert len(re.findall(r'data-live-kind="workload" ', html)) == 3


def test_bulk_restart_and_delete_confirm_once_and_show_each_result(world):
    make(world, "shop")
    make(world, "cart")
    bob = client_for(world.bob)
    page = bob.post(LIST, {"action": "delete", "obj": ["shop", "cart", "ghost"]})
    assert 'data-testid="bulk-confirm"' in page.content.decode()
    assert not Workload.objects.filter(deleting=True).exists()  # nothing before confirming
    html = bob.post(
        LIST, {"action": "delete", "obj": ["shop", "cart", "ghost"], "confirm": "yes"}
    ).content.decode()
    assert "Delete: 2 of 3 requested" in html
    assert "No workload named ghost in this tenant." in html
    assert set(Workload.objects.filter(deleting=True).values_list("name", flat=True)) == {
        "shop",
        "cart",
    }


def test_a_viewer_gets_no_bulk_boxes_and_a_403(world):
    make(world, "shop")
    carol = client_for(world.carol)
    assert 'data-testid="workload-bulk"' not in carol.get(LIST).content.decode()
    response = carol.post(LIST, {"action": "restart", "obj": ["shop"], "confirm": "yes"})
    assert response.status_code == 403
    response = client_for(world.bob).post(LIST, {"action": "scale", "obj": ["shop"]})
    assert response.status_code == 400
    assert "Unknown bulk action &#x27;scale&#x27;" in response.content.decode()


def test_a_workloads_labels_form_opened_earlier_keeps_a_label_added_since(world):
    """bob's page shows app=web; alice then adds tier=front. bob changes app: the
    workload has app=api and keeps tier=front."""
    workload = make(world, "web", labels={"app": "web"})
    bob = client_for(world.bob)
    sent = page_form_data(bob.get(f"{LIST}web/").content.decode(), "workload-edit-labels-form")
    services.workload_relabel(
        actor=world.alice, workload=workload, labels={"app": "web", "tier": "front"}
    )

    assert bob.post(f"{LIST}web/labels/", {**sent, "labels": "app=api"}).status_code == 302

    assert Workload.objects.get(pk=workload.pk).labels == {"app": "api", "tier": "front"}
