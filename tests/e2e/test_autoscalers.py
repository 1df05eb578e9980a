"""The tenant's autoscalers page in the browser: bob adds an autoscaler to a VM pool
through the target picker, sees it in the list, and its decisions redraw the row live
(a real Celery worker, libvirt's test driver)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.models import VMPool
from tests.conftest import ARTIFACTS, login
from tests.e2e.test_pools import ready_pool

pytestmark = pytest.mark.e2e

PHASE_TIMEOUT = 30_000


def test_bob_adds_an_autoscaler_through_the_picker_and_sees_it_decide_live(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    from django.utils import timezone

    from compute.tasks.pools import autoscalers_sweep
    from tests.compute.services.test_autoscalers import load

    pool = ready_pool(demo, make_host)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/")
    page.get_by_role("link", name="Autoscalers").click()
    page.wait_for_url(f"{live_url}/t/acme/autoscalers/")
    expect(page.get_by_test_id("autoscaler-empty")).to_contain_text("No autoscalers yet")
    page.get_by_test_id("autoscaler-create").click()
    page.wait_for_url(f"{live_url}/t/acme/autoscalers/new/")
    axe(page, "the autoscaler form")

    picker = page.get_by_test_id("autoscaler-target-picker")
    expect(picker.locator("optgroup[label='VM pools'] option")).to_have_text(["web"])
    # Bad input first: the error is on its field, nothing is created.
    picker.select_option("VMPool/web")
    page.get_by_label("Minimum").fill("9")
    page.get_by_label("Maximum").fill("4")
    page.get_by_role("button", name="Add an autoscaler").click()
    expect(page.get_by_test_id("error-min_replicas")).to_have_text("Must not be above the maximum.")
    expect(page.get_by_test_id("autoscaler-target-picker")).to_have_value("VMPool/web")
    page.get_by_label("Minimum").fill("1")
    page.get_by_label("Target utilisation (%)").fill("50")
    page.get_by_role("button", name="Add an autoscaler").click()

    page.wait_for_url(f"{live_url}/t/acme/autoscalers/")
    expect(page.get_by_test_id("messages")).to_contain_text("The autoscaler of web is saved")
    row = page.locator('tr[data-autoscaler-row="web"]')
    expect(row.get_by_test_id("autoscaler-kind")).to_have_text("VM pool")
    expect(row.get_by_test_id("autoscaler-target")).to_have_attribute(
        "href", "/t/acme/vmpools/web/"
    )
    expect(row).to_contain_text("1–4")

    # Busy members, one run as beat starts it: the row shows the decision by itself.
    load(VMPool.objects.get(pk=pool.pk), timezone.now(), 95, 95)
    autoscalers_sweep.delay()
    expect(row.get_by_test_id("autoscaler-reason")).to_have_text("ScaleUp", timeout=PHASE_TIMEOUT)
    expect(row.get_by_test_id("autoscaler-replicas")).to_have_text("4 → 4", timeout=PHASE_TIMEOUT)
    expect(row).to_contain_text("95")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "autoscaler-list-bob.png"), full_page=True)
    axe(page, "the autoscalers list")

    # The picker now shows the pool as taken.
    page.goto(f"{live_url}/t/acme/autoscalers/new/")
    expect(page.locator("option[value='VMPool/web']")).to_be_disabled()
    expect(page.locator("option[value='VMPool/web']")).to_contain_text("has the autoscaler web")
    page.screenshot(path=str(ARTIFACTS / "autoscaler-form-bob.png"), full_page=True)
