"""Services in the browser against the real API server (KWOK nodes), a real Celery
worker and cluster watch, and libvirt's test driver: bob creates a Service selecting
app=web (a bad port first: the field says why), and its page shows the members
appear by themselves, a pod of a labelled workload and a running labelled VM at its
address; stopping the VM takes it out of the list, live. Bob changes a Service to
NodePort on its page (a bad port first) and sees the allocated node port arrive, then
changes it back."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from compute.choices import Phase
from compute.models import Service
from compute.services import load_balancers as service_services
from compute.services import vms as vm_services
from compute.services.load_balancers import vm_addresses
from tests.compute.kubernetes.test_services import web_members
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.conftest import ARTIFACTS, login, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.kubernetes]

LIVE_TIMEOUT = 60_000  # ms: members follow Celery tasks and the watch, slow on 2 cores


def test_bob_creates_a_service_and_sees_its_pod_and_vm_members_live(
    make_tenant, make_host, tiny_image, celery_worker, watcher, live_url, new_page, axe
):
    tenant = make_tenant(prefix="e2e")
    slug = tenant.slug
    make_host("node-a")
    vm = web_members(tenant, "10.78.0.0/24")
    vm = wait_phase(vm, Phase.RUNNING, timeout=60)
    address = wait_for(lambda: vm_addresses(vm), 60, 0.2, message="the VM got no address")[0]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/{slug}/")
    page.get_by_role("link", name="Services").first.click()
    page.wait_for_url(f"{live_url}/t/{slug}/services/")
    expect(page.get_by_test_id("service-empty")).to_be_visible()
    form = page.get_by_test_id("service-form")
    form.get_by_label("Name", exact=True).fill("web")
    form.get_by_label("Type").select_option("NodePort")
    form.get_by_label("Selector").fill("app=web")
    form.get_by_label("Port name").fill("http")
    form.get_by_label("Port", exact=True).fill("70000")
    form.get_by_role("button", name="Create service").click()
    # Out of range: the field says why, nothing is made.
    expect(page.get_by_test_id("error-port")).to_contain_text("70000 is not a port number")
    assert not Service.objects.filter(tenant=tenant).exists()
    axe(page, "services page with a field error")

    page.get_by_label("Port", exact=True).fill("80")
    page.get_by_label("Target port").fill("8080")
    page.get_by_role("button", name="Create service").click()
    page.wait_for_url(f"{live_url}/t/{slug}/services/web/")

    # The members arrive by themselves: the pod and the VM at its address.
    members = page.get_by_test_id("service-members")
    vm_row = members.get_by_test_id("member-vm-web")
    expect(vm_row).to_contain_text(address, timeout=LIVE_TIMEOUT)
    expect(vm_row).to_contain_text("VM")
    pod_row = members.locator("tr", has_text="pods-web-")
    expect(pod_row).to_contain_text("Pod", timeout=LIVE_TIMEOUT)
    expect(pod_row).to_contain_text("Ready")
    expect(page.get_by_test_id("service-phase")).to_have_text("Ready")
    page.screenshot(path=str(ARTIFACTS / "service-members.png"), full_page=True)
    axe(page, "service page with members")

    # The VM stops: its row goes, live; the pod's stays.
    vm_services.vm_action(actor=None, vm=vm, action="stop")
    expect(vm_row).to_have_count(0, timeout=LIVE_TIMEOUT)
    expect(pod_row).to_have_count(1)

    page.goto(f"{live_url}/t/{slug}/services/")
    row = page.get_by_test_id("service-web")
    expect(row).to_contain_text("NodePort")
    expect(row).to_contain_text("app=web")
    expect(row).to_contain_text("1/1")
    axe(page, "services page")


def web_service_page(tenant, live_url, new_page):
    """Service ``web`` (http 80→8080) of ``tenant``, its page open for bob."""
    service_services.service_create(
        actor=None,
        tenant=tenant,
        name="web",
        selector={"app": "web"},
        ports=[{"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080}],
    )
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/{tenant.slug}/services/web/")
    return page


def test_bob_changes_a_services_type_to_nodeport_and_back_on_its_page(
    make_tenant, kube, celery_worker, live_url, new_page, axe
):
    tenant = make_tenant(prefix="e2e")
    slug = tenant.slug
    page = web_service_page(tenant, live_url, new_page)
    expect(page.get_by_test_id("service-phase")).to_have_text("Ready", timeout=LIVE_TIMEOUT)
    form = page.get_by_test_id("service-change-form")
    expect(form.get_by_label("Type")).to_have_value("ClusterIP")
    expect(form.get_by_label("Target port 1")).to_have_value("8080")
    form.get_by_label("Type").select_option("NodePort")
    form.get_by_label("Port 1", exact=True).fill("0")
    form.get_by_role("button", name="Save changes").click()
    # Refused: the row's field says why, the Service is unchanged.
    expect(page.get_by_test_id("error-ports-0-port")).to_contain_text("not a port number")
    assert Service.objects.get(tenant=tenant, name="web").service_type == "ClusterIP"
    axe(page, "service page with a refused change")

    form = page.get_by_test_id("service-change-form")
    form.get_by_label("Port 1", exact=True).fill("81")
    # A second port: "Add a port" gives a third, blank row (the second is blank already).
    form.get_by_label("Port name 2").fill("metrics")
    form.get_by_label("Port 2", exact=True).fill("9100")
    form.get_by_role("button", name="Add a port").click()
    expect(form.get_by_label("Port name 3")).to_be_focused()
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_url(f"{live_url}/t/{slug}/services/web/")
    expect(page.get_by_test_id("messages")).to_contain_text("Service web is being changed")
    # The node port the cluster allocates arrives by itself.
    node_ports = page.locator("[data-service-detail-field=nodePorts]")
    expect(node_ports).to_have_text(
        re.compile(r"^http: 3\d{4}, metrics: 3\d{4}$"), timeout=LIVE_TIMEOUT
    )
    page.screenshot(path=str(ARTIFACTS / "service-ports-bob.png"), full_page=True)
    found = kube.core.read_namespaced_service("web", tenant.namespace)
    assert found.spec.type == "NodePort"
    assert [(p.name, p.port) for p in found.spec.ports] == [("http", 81), ("metrics", 9100)]
    assert node_ports.inner_text() == (
        f"http: {found.spec.ports[0].node_port}, metrics: {found.spec.ports[1].node_port}"
    )
    axe(page, "service page after a change to NodePort")

    page.get_by_test_id("service-change-form").get_by_label("Type").select_option("ClusterIP")
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_url(f"{live_url}/t/{slug}/services/web/")
    expect(node_ports).to_have_count(0)
    wait_for(
        lambda: kube.core.read_namespaced_service("web", tenant.namespace).spec.type == "ClusterIP",
        60,
        0.3,
        message="the cluster's Service stayed NodePort",
    )


def test_bob_points_a_services_port_at_a_named_container_port_on_its_page(
    make_tenant, kube, celery_worker, live_url, new_page
):
    """A target port may name a pod's container port: a bad name comes back on the row's
    field with nothing changed; a good one is saved and shown as the Service's port."""
    tenant = make_tenant(prefix="e2e")
    page = web_service_page(tenant, live_url, new_page)
    form = page.get_by_test_id("service-change-form")
    form.get_by_label("Target port 1").fill("Web_Port")
    form.get_by_role("button", name="Save changes").click()
    expect(page.get_by_test_id("error-ports-0-target_port")).to_contain_text(
        "Web_Port is neither a port number (1–65535) nor a container port name"
    )
    assert Service.objects.get(tenant=tenant, name="web").ports[0]["targetPort"] == 8080

    form = page.get_by_test_id("service-change-form")
    form.get_by_label("Target port 1").fill("p8080")
    form.get_by_role("button", name="Save changes").click()
    page.wait_for_url(f"{live_url}/t/{tenant.slug}/services/web/")
    expect(page.get_by_test_id("messages")).to_contain_text("Service web is being changed")
    expect(page.locator("[data-service-detail]")).to_contain_text("http: 80→p8080/TCP")
    expect(page.get_by_test_id("service-change-form").get_by_label("Target port 1")).to_have_value(
        "p8080"
    )
    assert Service.objects.get(tenant=tenant, name="web").ports[0]["targetPort"] == "p8080"
