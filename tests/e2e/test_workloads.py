"""Workloads in the browser: bob creates a Deployment from the form and watches its
replicas become ready, live, from the cluster watch (real API server, KWOK nodes)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.compute.kubernetes import conftest as k8s
from tests.conftest import ARTIFACTS, login

pytestmark = [pytest.mark.e2e, pytest.mark.kubernetes]

# The kubernetes tier's fixtures, used here too.
cluster, kube, make_tenant, watcher = k8s.cluster, k8s.kube, k8s.make_tenant, k8s.watcher

READY_TIMEOUT = 60_000


def test_bob_creates_a_deployment_and_watches_its_replicas_become_ready(
    make_tenant,
    celery_worker,
    watcher,
    live_url,
    new_page,
    axe,
):
    tenant = make_tenant(quota={"cpu": 4, "memory": 4096, "pods": 10}, prefix="e2e")
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/{tenant.slug}/workloads/")
    expect(page.get_by_test_id("workload-empty")).to_be_visible()
    page.get_by_role("link", name="Create workload").click()
    page.wait_for_url(f"{live_url}/t/{tenant.slug}/workloads/new/")
    expect(page.get_by_test_id("left-pods")).to_contain_text("10 of 10 pods left")
    expect(page.get_by_test_id("left-cpu")).to_contain_text("4 of 4 cores left")

    page.get_by_label("Name").fill("shop")
    page.get_by_label("Image").fill("registry.invalid/acme/shop:1.0")
    page.get_by_label("Replicas", exact=True).fill("3")
    page.get_by_label("CPU request").fill("250m")
    page.get_by_label("Memory request").fill("64Mi")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "workload-form-bob.png"), full_page=True)
    axe(page, "workload-form-bob")
    page.get_by_role("button", name="Create workload").click()

    page.wait_for_url(f"{live_url}/t/{tenant.slug}/workloads/shop/")
    expect(page.get_by_test_id("messages")).to_contain_text("shop accepted")
    # No reload from here on: the watch pushes every change to the page.
    expect(page.get_by_test_id("workload-ready")).to_have_text("3/3", timeout=READY_TIMEOUT)
    detail = page.get_by_test_id("workload-detail")
    expect(detail.get_by_test_id("phase").first).to_have_text("Running")
    expect(detail.get_by_test_id("ready").first).to_have_text("Ready")
    expect(page.get_by_test_id("workload-pods").locator("tbody tr")).to_have_count(3)
    expect(page.get_by_test_id("workload-pods")).to_contain_text("isotope-node-")
    expect(page.get_by_test_id("workload-events")).to_contain_text("Scheduled")
    page.screenshot(path=str(ARTIFACTS / "workload-detail-bob.png"), full_page=True)
    axe(page, "workload-detail-bob")

    # Scale from the page: the count follows live.
    page.get_by_test_id("scale-replicas").fill("5")
    page.get_by_test_id("workload-actions").get_by_role("button", name="Scale").click()
    expect(page.get_by_test_id("workload-ready")).to_have_text("5/5", timeout=READY_TIMEOUT)
    expect(page.get_by_test_id("workload-pods").locator("tbody tr")).to_have_count(5)

    page.goto(f"{live_url}/t/{tenant.slug}/workloads/")
    expect(page.locator('tr[data-live-name="shop"]').get_by_test_id("workload-ready")).to_have_text(
        "5/5"
    )
    page.screenshot(path=str(ARTIFACTS / "workload-list-bob.png"), full_page=True)
    axe(page, "workload-list-bob")
    page.goto(f"{live_url}/t/{tenant.slug}/workloads/shop/logs/")
    expect(page.get_by_test_id("logs-reason")).to_contain_text("KWOK fake nodes")
    page.goto(f"{live_url}/t/{tenant.slug}/")
    expect(page.get_by_test_id("workload-summary")).to_contain_text("5/5")
    page.screenshot(path=str(ARTIFACTS / "tenant-overview-bob.png"), full_page=True)
    axe(page, "tenant-overview-bob")
    page.goto(f"{live_url}/")
    expect(page.get_by_test_id(f"compute-line-{tenant.slug}")).to_contain_text(
        "1 workload · 5/5 pods ready"
    )
    page.screenshot(path=str(ARTIFACTS / "dashboard-bob.png"), full_page=True)
    axe(page, "dashboard-bob")


def test_a_pods_log_frame_shows_what_the_node_says(
    cluster, make_tenant, celery_worker, watcher, live_url, new_page
):
    """The log of a pod is shown in a frame of the logs page; the site's own
    X-Frame-Options (DENY) kept the frame empty. KWOK's nodes serve no logs: the
    cluster is recorded here as one whose nodes may, so the frame shows the node's
    refusal, as text."""
    from compute.models import KubernetesCluster, Workload
    from compute.services import workloads as services
    from tests.conftest import wait_for

    tenant = make_tenant(quota={"cpu": 2, "memory": 1024, "pods": 4}, prefix="e2e")
    services.workload_create(actor=None, tenant=tenant, name="api", image="nginx:1.27")
    wait_for(lambda: Workload.objects.get(tenant=tenant, name="api").pods, 60)
    KubernetesCluster.objects.filter(pk=cluster.pk).update(
        capabilities={**cluster.capabilities, "logs": True}
    )
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/{tenant.slug}/workloads/api/logs/")
    frame = page.frame_locator("iframe")
    expect(frame.locator("body")).to_contain_text("No logs: ", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "workload-log-frame.png"), full_page=True)
