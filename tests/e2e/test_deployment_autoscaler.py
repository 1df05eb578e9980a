"""A Deployment's autoscaler in the browser: bob adds one with minimum 0 (scale to zero)
from the Deployment's page (the pool page's form); the Scale button then gives way to a
note that leads to the autoscaler panel, and its HorizontalPodAutoscaler's status
arrives on the page live from the cluster watch (real API server, KWOK nodes)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.models import Autoscaler
from compute.services import workloads as services
from tests.compute.kubernetes import conftest as k8s
from tests.conftest import ARTIFACTS, login, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.kubernetes]

cluster, kube, make_tenant, watcher = k8s.cluster, k8s.kube, k8s.make_tenant, k8s.watcher

STATUS_TIMEOUT = 60_000


def test_bob_adds_an_autoscaler_to_a_deployment_and_sees_its_status(
    make_tenant, celery_worker, watcher, live_url, new_page, axe
):
    tenant = make_tenant(quota={"cpu": 4, "memory": 4096, "pods": 10}, prefix="e2e")
    services.workload_create(
        actor=None,
        tenant=tenant,
        name="shop",
        image="registry.invalid/acme/shop:1.0",
        replicas=2,
        cpu_request="100m",
        memory_request="64Mi",
    )
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/{tenant.slug}/workloads/shop/")
    panel = page.get_by_test_id("autoscaler-panel")
    expect(panel).to_contain_text("HorizontalPodAutoscaler")

    # Sized by hand so far: the Scale button is there, no note.
    scale = page.get_by_test_id("workload-actions").get_by_role("button", name="Scale")
    expect(scale).to_be_visible()
    expect(page.get_by_test_id("workload-sized-note")).to_have_count(0)

    # Bad input first: a minimum above the maximum is refused on its field.
    page.get_by_label("Minimum").fill("5")
    page.get_by_label("Maximum").fill("4")
    page.get_by_label("Target utilisation (%)").fill("50")
    page.get_by_test_id("autoscaler-save").click()
    expect(page.get_by_test_id("autoscaler-form")).to_contain_text("Must not be above the maximum")
    assert not Autoscaler.objects.filter(tenant=tenant).exists()

    # A minimum of 0 (scale to zero) is accepted for a Deployment.
    expect(page.get_by_test_id("autoscaler-form")).to_contain_text("scale to zero")
    page.get_by_label("Minimum").fill("0")
    page.get_by_test_id("autoscaler-save").click()
    page.wait_for_url(f"{live_url}/t/{tenant.slug}/workloads/shop/")
    expect(page.get_by_test_id("messages")).to_contain_text("The autoscaler of shop is saved.")
    assert Autoscaler.objects.get(tenant=tenant).min_replicas == 0
    expect(page.get_by_test_id("autoscaler-panel")).to_contain_text("0–4 pods")
    # The autoscaler sizes it now: no Scale button, a note that leads to the panel.
    expect(scale).to_have_count(0)
    note = page.get_by_test_id("workload-sized-note")
    expect(note).to_contain_text("Sized by its autoscaler shop")
    expect(note).to_contain_text("comes back when scaled by hand")
    note.get_by_role("link", name="autoscaler panel").click()
    page.wait_for_url(f"{live_url}/t/{tenant.slug}/workloads/shop/#autoscaler")
    expect(page.get_by_test_id("autoscaler-panel")).to_be_in_viewport()
    # No reload from here on: the HPA's status comes through the watch, live.
    expect(page.get_by_test_id("autoscaler-reason")).not_to_have_text(
        "not run yet", timeout=STATUS_TIMEOUT
    )
    replicas = page.get_by_test_id("autoscaler-replicas")
    expect(replicas).to_contain_text("2 →", timeout=STATUS_TIMEOUT)
    row = wait_for(lambda: Autoscaler.objects.filter(tenant=tenant).exclude(conditions=[]).first())
    assert row.workload.name == "shop"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "deployment-autoscaler-bob.png"), full_page=True)
    axe(page, "deployment-autoscaler-bob")
    # The HPA's conditions, live and as the page renders them.
    expect(page.get_by_test_id("autoscaler-conditions")).to_contain_text("AbleToScale")
    page.reload()
    expect(page.get_by_test_id("autoscaler-conditions")).to_contain_text("AbleToScale")
    expect(page.get_by_test_id("autoscaler-panel")).to_contain_text("0–4 pods")
    expect(scale).to_have_count(0)
