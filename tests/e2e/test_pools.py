"""VM pools in the browser against a real Celery worker and libvirt's test driver."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.models import VirtualMachine, VMPool
from tests.conftest import ARTIFACTS, live_subscribed, login, wait_for


def ready_pool(demo, make_host) -> VMPool:
    """bob's pool "web" of 2 tiny members on a test-driver host, both Ready."""
    from compute.services import pools as pool_services

    make_host("node-a")
    pool = pool_services.pool_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="web",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        replicas=2,
    )
    wait_for(lambda: VMPool.objects.get(pk=pool.pk).ready_replicas == 2, 30)
    return pool


pytestmark = pytest.mark.e2e

# Long enough for provisioning on a busy machine; live updates usually take well under 1 s.
PHASE_TIMEOUT = 30_000


def member(page, name: str):
    return page.get_by_test_id("pool-members").locator(f'tr[data-member="{name}"]')


def test_bob_creates_a_pool_of_two_scales_it_to_three_and_deletes_it(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    make_host("node-a")
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vmpools/")
    expect(page.get_by_test_id("pool-empty")).to_be_visible()
    page.get_by_role("link", name="Create VM pool").click()
    page.wait_for_url(f"{live_url}/t/acme/vmpools/new/")
    expect(page.get_by_test_id("pool-quota-left")).to_contain_text("20 of 20")
    axe(page, "the VM pool form")

    page.get_by_label("Name").fill("web")
    page.get_by_label("Replicas").fill("2")
    page.get_by_label("Image").select_option(label="Tiny guest")
    page.get_by_label("Memory per member (MiB)").fill("256")
    page.get_by_role("button", name="Create pool").click()

    page.wait_for_url(f"{live_url}/t/acme/vmpools/web/")
    expect(page.get_by_test_id("messages")).to_contain_text("web accepted")
    detail = page.get_by_test_id("pool-detail")
    # The members appear and boot while the page is open (live updates, no reload).
    expect(detail.get_by_test_id("pool-ready")).to_have_text("2/2", timeout=PHASE_TIMEOUT)
    expect(detail.get_by_test_id("phase").first).to_have_text("Ready")
    for name in ("web-0", "web-1"):
        expect(member(page, name).locator(".iso-phase")).to_have_text("Running")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "pool-detail-bob.png"), full_page=True)
    axe(page, "the VM pool page")

    page.get_by_test_id("pool-scale-replicas").fill("3")
    page.get_by_test_id("pool-scale").click()
    expect(page.get_by_test_id("messages")).to_contain_text("Scaling web to 3 members")
    # The new member shows up on the page by itself, and runs.
    detail = page.get_by_test_id("pool-detail")
    expect(member(page, "web-2")).to_be_visible(timeout=PHASE_TIMEOUT)
    expect(member(page, "web-2").locator(".iso-phase")).to_have_text(
        "Running", timeout=PHASE_TIMEOUT
    )
    expect(detail.get_by_test_id("pool-ready")).to_have_text("3/3", timeout=PHASE_TIMEOUT)
    expect(page.get_by_test_id("pool-events")).to_contain_text("Created member web-2")

    # A count typed but not sent yet stays while the pool changes under it (someone
    # else scales it down): the live update moves an untouched field only.
    field = page.get_by_test_id("pool-scale-replicas")
    expect(field).to_have_value("3")
    field.fill("5")
    field.press("Tab")
    from compute.services import pools as pool_services

    pool_services.pool_scale(actor=demo.bob, pool=VMPool.objects.get(name="web"), replicas=2)
    expect(detail.get_by_test_id("pool-ready")).to_have_text("2/2", timeout=PHASE_TIMEOUT)
    expect(field).to_have_value("5")

    page.get_by_test_id("pool-delete").click()
    dialog = page.locator("#vm-confirm")
    expect(dialog).to_contain_text("every one of its member VMs")
    dialog.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{live_url}/t/acme/vmpools/")
    expect(page.get_by_test_id("messages")).to_contain_text("Deleting web and its members")
    wait_for(lambda: not VMPool.objects.filter(name="web").exists(), 30)
    page.wait_for_function(
        "() => !document.querySelector('tr[data-live-name=\"web\"]') || "
        "document.querySelector('tr[data-live-name=\"web\"]').dataset.liveDeleted",
        timeout=PHASE_TIMEOUT,
    )
    assert not VirtualMachine.objects.filter(name__startswith="web-").exists()


def test_carol_the_viewer_sees_the_pool_but_no_controls(
    demo, make_host, tiny_image, live_url, new_page
):
    from compute.services import pools as pool_services

    make_host("node-a")
    pool_services.pool_create(
        actor=demo.bob, tenant=demo.acme, name="web", image="tiny", vcpus=1, memory_mib=256
    )
    page = new_page()
    login(page, live_url, "carol")
    page.goto(f"{live_url}/t/acme/vmpools/")
    expect(page.locator('tr[data-pool="web"]')).to_be_visible()
    expect(page.get_by_role("link", name="Create VM pool")).to_have_count(0)
    page.goto(f"{live_url}/t/acme/vmpools/web/")
    expect(page.get_by_test_id("pool-detail")).to_be_visible()
    expect(page.get_by_test_id("pool-scale")).to_have_count(0)
    expect(page.get_by_test_id("pool-delete")).to_have_count(0)
    expect(page.get_by_test_id("autoscaler-form")).to_have_count(0)
    expect(page.get_by_test_id("autoscaler-none")).to_be_visible()


def test_an_autoscaler_added_on_the_pool_page_shows_its_decision_live(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    """bob adds an autoscaler to a busy pool of 2; its run (as beat starts it) scales
    the pool to 4, and the decision and the new members appear without a reload."""
    from compute.tasks.pools import autoscalers_sweep
    from tests.compute.services.test_autoscalers import load

    pool = ready_pool(demo, make_host)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vmpools/web/")
    form = page.get_by_test_id("autoscaler-form")
    form.get_by_label("Maximum").fill("4")
    form.get_by_label("Target utilisation (%)").fill("50")
    form.get_by_role("button", name="Add an autoscaler").click()
    expect(page.get_by_test_id("messages")).to_contain_text("The autoscaler of web is saved")
    panel = page.get_by_test_id("autoscaler-panel")
    expect(panel.get_by_test_id("autoscaler-status")).to_contain_text("1–4 members")
    expect(panel.get_by_test_id("autoscaler-chart-box")).to_be_visible()

    from django.utils import timezone

    load(VMPool.objects.get(pk=pool.pk), timezone.now(), 95, 95)
    autoscalers_sweep.delay()
    expect(panel.get_by_test_id("autoscaler-reason")).to_have_text("ScaleUp", timeout=PHASE_TIMEOUT)
    expect(panel.get_by_test_id("autoscaler-decisions")).to_contain_text("2 → 4")
    # The chart of replicas vs the metric got the run's point, live.
    page.wait_for_function(
        """() => {
            const c = Chart.getChart(document.querySelector('[data-autoscaler-chart]'));
            if (!c) return false;
            const [replicas, metric, target] = c.data.datasets;
            return replicas.data.length >= 1 && replicas.data.at(-1).y === 4
                && metric.data.at(-1).y === 95 && target.data.at(-1).y === 50;
        }""",
        timeout=PHASE_TIMEOUT,
    )
    expect(panel.locator("[data-autoscaler-chart-empty]")).to_be_hidden()
    expect(member(page, "web-3")).to_be_visible(timeout=PHASE_TIMEOUT)
    expect(page.get_by_test_id("pool-ready")).to_have_text("4/4", timeout=PHASE_TIMEOUT)
    page.screenshot(path=str(ARTIFACTS / "pool-autoscaler-bob.png"), full_page=True)
    axe(page, "the VM pool page with an autoscaler")


def test_bob_edits_the_template_and_watches_the_rolling_update_live(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    """A Ready pool of 2: bob saves a new memory size on the pool page; the members are
    replaced one at a time by the controller and the page follows without a reload
    until "updated 2 of 2"."""
    from compute.services import pools as pool_services

    make_host("node-a")
    pool = pool_services.pool_create(
        actor=demo.bob, tenant=demo.acme, name="web", image="tiny", vcpus=1, memory_mib=256
    )
    pool_services.pool_scale(actor=demo.bob, pool=pool, replicas=2)
    wait_for(lambda: VMPool.objects.get(pk=pool.pk).ready_replicas == 2, 30)
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vmpools/web/")
    card = page.get_by_test_id("pool-template")
    expect(card.get_by_test_id("pool-rollout")).to_have_text("Template 1: updated 2 of 2")
    axe(page, "the VM pool page with its template form")
    form = card.get_by_test_id("pool-template-form")
    form.get_by_label("Memory per member (MiB)").fill("320")
    form.get_by_label("Warm members", exact=True).fill("1")
    form.get_by_role("button", name="Save the template").click()
    expect(page.get_by_test_id("messages")).to_contain_text("the new template is rolled out")
    rollout = page.get_by_test_id("pool-template").get_by_test_id("pool-rollout")
    # Live, without a reload: the progress ends at 2 of 2.
    expect(rollout).to_have_text("Template 2: updated 2 of 2", timeout=60_000)
    expect(page.get_by_test_id("pool-warm")).to_have_text("1/1", timeout=PHASE_TIMEOUT)
    expect(page.get_by_test_id("pool-events")).to_contain_text("Every member runs template 2")
    # The old members go once deleted (their rows vanish from the live table).
    for name in ("web-0", "web-1"):
        expect(member(page, name)).to_have_count(0, timeout=PHASE_TIMEOUT)
    serving = VirtualMachine.objects.filter(pool=pool, pool_warm=False).exclude(phase="Deleting")
    assert {vm.memory_mib for vm in serving} == {320}
    page.screenshot(path=str(ARTIFACTS / "pool-rollout-bob.png"), full_page=True)


def test_bob_creates_a_recreate_pool_with_a_paused_warm_member_and_updates_it(
    demo, make_host, tiny_image, celery_worker, live_url, new_page, axe
):
    """On the create form bob picks the recreate strategy and paused warm members; the
    pool page shows both, its warm member turns Paused, and a new template saved on the
    page deletes the old member before the new one comes, live."""
    make_host("node-a")
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vmpools/new/")
    page.get_by_label("Name").fill("web")
    page.get_by_label("Replicas").fill("1")
    page.get_by_label("Warm members", exact=True).fill("1")
    page.get_by_label("Warm members kept").select_option(label="Paused")
    page.get_by_label("Update strategy").select_option(label="Recreate")
    expect(page.get_by_text("a paused member is charged to the quota")).to_be_visible()
    axe(page, "the VM pool form with its strategy and warm mode")
    page.get_by_label("Image").select_option(label="Tiny guest")
    page.get_by_role("button", name="Create pool").click()

    page.wait_for_url(f"{live_url}/t/acme/vmpools/web/")
    expect(page.get_by_test_id("pool-strategy")).to_have_text("Recreate")
    expect(page.get_by_test_id("pool-warm-mode")).to_contain_text("(charged as running VMs)")
    expect(page.get_by_test_id("pool-ready")).to_have_text("1/1", timeout=PHASE_TIMEOUT)
    expect(page.get_by_test_id("pool-warm")).to_have_text("1/1", timeout=PHASE_TIMEOUT)
    expect(member(page, "web-1").locator(".iso-phase")).to_have_text("Paused")
    expect(page.get_by_test_id("pool-events")).to_contain_text("Paused warm member web-1")

    form = page.get_by_test_id("pool-template").get_by_test_id("pool-template-form")
    expect(form.get_by_label("Update strategy")).to_have_value("recreate")
    form.get_by_label("Memory per member (MiB)").fill("320")
    form.get_by_role("button", name="Save the template").click()
    expect(page.get_by_test_id("messages")).to_contain_text("the new template is rolled out")
    rollout = page.get_by_test_id("pool-template").get_by_test_id("pool-rollout")
    expect(rollout).to_have_text("Template 2: updated 1 of 1", timeout=60_000)
    expect(page.get_by_test_id("pool-events")).to_contain_text("recreated from the new template")
    expect(page.get_by_test_id("pool-events")).to_contain_text("Every member runs template 2")
    expect(page.get_by_test_id("pool-warm")).to_have_text("1/1", timeout=PHASE_TIMEOUT)
    expect(member(page, "web-0")).to_have_count(0, timeout=PHASE_TIMEOUT)
    page.screenshot(path=str(ARTIFACTS / "pool-recreate-bob.png"), full_page=True)
    axe(page, "the VM pool page of a recreate pool")


def test_a_pool_page_opened_before_a_colleagues_new_image_does_not_roll_it_back(
    demo, make_host, tiny_image, live_url, new_page, axe
):
    """bob opened the pool page; alice then rolled the pool to image v2. bob, without a
    reload, asks for one more warm member: it is added and the pool stays on v2 (no
    rollback to the image his page still shows). A field both of them changed is
    refused with the reason and nothing is saved."""
    from compute.models import Image
    from compute.services import pools as pool_services

    v2 = Image.objects.create(
        name="tiny-v2",
        display_name="Tiny guest v2",
        kind=tiny_image.kind,
        kernel_path=tiny_image.kernel_path,
        initrd_path=tiny_image.initrd_path,
        min_memory_mib=128,
    )
    make_host("node-a")
    pool = pool_services.pool_create(
        actor=demo.bob, tenant=demo.acme, name="web", image="tiny", vcpus=1, memory_mib=256
    )
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vmpools/web/")
    live_subscribed(page)
    card = page.get_by_test_id("pool-template")
    form = card.get_by_test_id("pool-template-form")

    pool_services.pool_update(actor=demo.alice, pool=pool, image=v2)
    # The live update reached the page; the form still shows (and would send) v1.
    expect(card.get_by_test_id("pool-rollout")).to_contain_text("Template 2")
    expect(form.get_by_label("Image")).to_have_value(str(tiny_image.pk))
    form.get_by_label("Warm members", exact=True).fill("1")
    form.get_by_role("button", name="Save the template").click()

    expect(page.get_by_test_id("messages")).to_contain_text("web is saved.")
    pool.refresh_from_db()
    assert (pool.image_id, pool.warm, pool.template_generation) == (v2.pk, 1, 2)
    form = page.get_by_test_id("pool-template").get_by_test_id("pool-template-form")
    expect(form.get_by_label("Image")).to_have_value(str(v2.pk))

    # Both change the warm members: bob's stale page is refused, alice's 2 stay.
    pool_services.pool_update(actor=demo.alice, pool=pool, warm=2)
    form.get_by_label("Warm members", exact=True).fill("3")
    form.get_by_role("button", name="Save the template").click()
    form = page.get_by_test_id("pool-template").get_by_test_id("pool-template-form")
    expect(form.get_by_role("alert")).to_contain_text(
        "web was changed by someone else since you opened this page; reload to see the change."
    )
    expect(form.get_by_test_id("error-warm")).to_contain_text("now 2")
    pool.refresh_from_db()
    assert (pool.warm, pool.template_generation) == (2, 2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    card.screenshot(path=str(ARTIFACTS / "pool-template-stale.png"))
    axe(page, "the VM pool page with a refused stale template form")
