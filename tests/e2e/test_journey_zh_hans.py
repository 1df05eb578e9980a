"""The whole tenant journey in Chinese, in Chromium: mei, a tenant admin whose stored
language is zh-hans, creates a VM with the form (a real QEMU guest on node1), sees it
Running and Ready, opens its noVNC console, live-migrates it to node2 and sees the
migration succeed, then deploys a workload (real API server, KWOK nodes) and sees it
Running. Every page is asserted on the Chinese a person reads, checked by axe-core and
kept as a full-page screenshot (var/test-artifacts/journey-zh-hans-*.png)."""

from __future__ import annotations

import secrets

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from compute.models import Host, Migration, VirtualMachine, Workload
from tenants import services as tenant_services
from tenants.choices import Role
from tenants.models import UserPreference
from tests.compute.kubernetes import conftest as k8s
from tests.compute.test_migration_qemu import nodes, policy  # noqa: F401 - fixture
from tests.conftest import ARTIFACTS, GUEST_BOOT_TIMEOUT, PASSWORD, login, wait_for
from tests.e2e.test_console import LIT_PIXELS

pytestmark = [pytest.mark.e2e, pytest.mark.qemu, pytest.mark.migration, pytest.mark.kubernetes]

# The kubernetes tier's fixtures, used here too.
cluster, kube, make_tenant, watcher = k8s.cluster, k8s.kube, k8s.make_tenant, k8s.watcher

BOOT = int(GUEST_BOOT_TIMEOUT * 1000)


def shot(page, step: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"journey-zh-hans-{step}.png"), full_page=True)


def test_mei_creates_a_vm_opens_its_console_migrates_it_and_deploys_a_workload_in_chinese(
    nodes,  # noqa: F811 - fixture
    make_tenant,
    celery_worker,
    watcher,
    live_url,
    new_page,
    axe,
):
    tenant = make_tenant(prefix="zh")
    mei = get_user_model().objects.create_user("mei", "mei@example.com", PASSWORD)
    tenant_services.membership_add(actor=None, tenant=tenant, user=mei, role=Role.ADMIN)
    UserPreference.objects.create(user=mei, language="zh-hans")
    policy(bandwidth_mib=64)
    base = f"{live_url}/t/{tenant.slug}"
    name = f"mg-{secrets.token_hex(3)}"  # the nodes fixture removes its domains afterwards

    page = new_page()
    login(page, live_url, "mei")
    page.goto(f"{base}/vms/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.get_by_role("heading", name="虚拟机", level=1)).to_be_visible()
    shot(page, "01-vm-list-empty")
    axe(page, "journey: empty VM list")

    # 1. Create the VM with the form.
    page.get_by_role("link", name="创建虚拟机").first.click()
    page.wait_for_url(f"{base}/vms/new/")
    expect(page.get_by_role("heading", name="创建虚拟机", level=1)).to_be_visible()
    page.get_by_label("名称").fill(name)
    page.get_by_label("镜像").select_option(label="tiny")
    page.get_by_label("自定义").check()
    page.get_by_label("vCPU 数").fill("1")
    page.get_by_label("内存（MiB）").fill("256")
    page.get_by_label("磁盘（GiB）").fill("0")
    shot(page, "02-vm-form")
    axe(page, "journey: VM form")
    # The guest starts on node1, so that it has somewhere to go.
    Host.objects.filter(name="node2").update(maintenance=True)
    page.get_by_role("button", name="创建虚拟机").click()
    page.wait_for_url(f"{base}/vms/{name}/")
    Host.objects.filter(name="node2").update(maintenance=False)
    assert VirtualMachine.objects.get(name=name).host.name == "node1"
    expect(page.get_by_test_id("messages")).to_contain_text(f"{name} 已受理：正在配置。")

    # 2. Running, then Ready, without a reload.
    header = page.locator("h1")
    expect(header.get_by_test_id("phase")).to_have_text("运行中", timeout=BOOT)
    expect(header.get_by_test_id("ready")).to_have_text("就绪", timeout=BOOT)
    panel = page.get_by_test_id("migration-panel")
    expect(panel.get_by_role("heading", name="热迁移")).to_be_visible()
    expect(panel.get_by_role("button", name="迁移")).to_be_visible()
    console = page.get_by_test_id("console")
    expect(console.get_by_test_id("console-connect")).to_have_text("连接")
    expect(console.get_by_test_id("console-screen")).to_have_attribute("data-empty-label", "无画面")
    expect(page.get_by_test_id("vm-metrics")).to_contain_text("CPU（占 vCPU 的 %）")
    # What happened reads in Chinese too: the event rendered with the page and those
    # that arrived live on its socket, phase words included.
    events = page.get_by_test_id("vm-events")
    expect(events).to_contain_text("已接受：1 个 vCPU，256 MiB，镜像 tiny。")
    expect(events).to_contain_text("阶段变为运行中。", timeout=BOOT)
    expect(events).not_to_contain_text("Phase is now")
    shot(page, "03-vm-running")
    axe(page, "journey: VM running")

    # 3. The console page: connected, the guest's shell on the screen.
    page.get_by_role("link", name="打开控制台页面").click()
    page.wait_for_url(f"{base}/vms/{name}/console/")
    expect(page.get_by_test_id("console-state")).to_have_text("已连接", timeout=20_000)
    page.wait_for_function(f"() => ({LIT_PIXELS})() > 200", timeout=20_000)
    expect(page.get_by_role("button", name="断开")).to_be_visible()
    expect(page.get_by_role("button", name="粘贴")).to_be_visible()
    shot(page, "04-console")
    axe(page, "journey: console")

    # 4. Live migration to node2.
    page.goto(f"{base}/vms/{name}/")
    panel = page.get_by_test_id("migration-panel")
    panel.get_by_role("button", name="迁移").click()
    expect(panel.get_by_test_id("migrate-note")).to_contain_text("迁移")
    wait_for(lambda: Migration.objects.filter(phase="Succeeded").exists(), 120)
    history = panel.get_by_test_id("migration-history")
    expect(history.get_by_text("已成功")).to_be_visible(timeout=15_000)
    expect(history.get_by_role("columnheader", name="阶段")).to_be_visible()
    expect(page.locator("h1").get_by_test_id("phase")).to_have_text("运行中")
    assert VirtualMachine.objects.get(name=name).host.name == "node2"
    shot(page, "05-vm-migrated")
    axe(page, "journey: VM migrated")

    # 5. A workload, deployed from the form.
    page.get_by_role("complementary").get_by_role("link", name="工作负载").click()
    page.wait_for_url(f"{base}/workloads/")
    expect(page.get_by_role("heading", name="工作负载", level=1)).to_be_visible()
    page.get_by_role("link", name="创建工作负载").first.click()
    page.wait_for_url(f"{base}/workloads/new/")
    page.get_by_label("名称").fill("shop")
    page.get_by_label("镜像").fill("registry.invalid/acme/shop:1.0")
    page.get_by_label("副本数", exact=True).fill("2")
    page.get_by_label("CPU 请求").fill("100m")
    page.get_by_label("内存请求").fill("64Mi")
    shot(page, "06-workload-form")
    axe(page, "journey: workload form")
    page.get_by_role("button", name="创建工作负载").click()
    page.wait_for_url(f"{base}/workloads/shop/")
    expect(page.get_by_test_id("workload-ready")).to_have_text("2/2", timeout=60_000)
    detail = page.get_by_test_id("workload-detail")
    expect(detail.get_by_test_id("phase").first).to_have_text("运行中")
    expect(detail.get_by_test_id("ready").first).to_have_text("就绪")
    pods = page.get_by_test_id("workload-pods")
    expect(pods.locator("tbody tr")).to_have_count(2)
    expect(pods.locator("tbody .iso-phase")).to_have_text(["运行中", "运行中"])
    shot(page, "07-workload-running")
    axe(page, "journey: workload running")
    assert Workload.objects.get(tenant=tenant, name="shop").replicas == 2

    # The tenant's overview sums both up.
    page.goto(f"{base}/")
    expect(page.get_by_test_id("workload-summary")).to_contain_text("2/2")
    expect(page.get_by_role("main").locator(".iso-role-admin")).to_have_text("管理员")
    expect(page.get_by_role("complementary").locator(".iso-role-admin")).to_have_text("管理员")
    shot(page, "08-tenant-overview")
    axe(page, "journey: tenant overview")
