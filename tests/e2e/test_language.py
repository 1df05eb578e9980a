"""Chinese in Chromium: the top bar's language switch turns the VM list and the create
form into Chinese (live phases too, through the JavaScript catalogue), the choice stays
with the user, the switch goes back to English, and a signed-out browser that asks for
Chinese gets it. Both languages pass axe-core."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from compute.services import vms as vm_services
from tenants.models import UserPreference
from tests.conftest import ARTIFACTS, login
from tests.e2e.axe import assert_accessible

pytestmark = pytest.mark.e2e

PHASE_TIMEOUT = 20_000


def switch_language(page, current: str, choice: str) -> None:
    page.get_by_test_id("language-switch").get_by_role("button", name=current).click()
    page.get_by_test_id("language-switch").get_by_role("button", name=choice).click()


def test_bob_switches_to_chinese_sees_the_vm_list_and_form_in_chinese_and_back(
    demo, make_host, tiny_image, flavors, celery_worker, live_url, new_page
):
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/vms/")
    expect(page.get_by_role("heading", name="Virtual machines", level=1)).to_be_visible()

    switch_language(page, "Language: English", "简体中文")
    page.wait_for_url(f"{live_url}/t/acme/vms/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.get_by_role("heading", name="虚拟机", level=1)).to_be_visible()
    table = page.get_by_test_id("vm-table")
    for header in ("名称", "阶段", "规格", "镜像", "创建时间", "操作"):
        expect(table.get_by_role("columnheader", name=header)).to_be_visible()
    web1 = page.locator('tr[data-live-kind="vm"][data-live-name="web-1"]')
    # The phase arrives live (live.js words it from the JavaScript catalogue).
    expect(web1.get_by_test_id("phase")).to_have_text("运行中", timeout=PHASE_TIMEOUT)
    expect(web1.get_by_role("button", name="停止", exact=True)).to_be_visible()
    expect(page.get_by_test_id("list-filters").get_by_role("button", name="应用")).to_be_visible()
    assert UserPreference.objects.get(user=demo.bob).language == "zh-hans"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "vm-list-zh-hans.png"), full_page=True)
    assert_accessible(page, "VM list in Chinese")

    page.get_by_role("link", name="创建虚拟机").click()
    page.wait_for_url(f"{live_url}/t/acme/vms/new/")
    expect(page.get_by_role("heading", name="创建虚拟机", level=1)).to_be_visible()
    page.get_by_label("名称").fill("web-2")
    page.get_by_label("镜像").select_option(label="Tiny guest")
    page.get_by_label("自定义").check()
    expect(page.get_by_label("内存（MiB）")).to_be_visible()
    page.get_by_label("内存（MiB）").fill("256")
    expect(page.get_by_label("重启策略")).to_be_visible()
    expect(page.get_by_test_id("left-vms")).to_contain_text("虚拟机剩余 19 / 20 台")
    page.screenshot(path=str(ARTIFACTS / "vm-form-zh-hans.png"), full_page=True)
    assert_accessible(page, "VM form in Chinese")
    page.get_by_role("button", name="创建虚拟机").click()

    page.wait_for_url(f"{live_url}/t/acme/vms/web-2/")
    expect(page.get_by_test_id("messages")).to_contain_text("web-2 已受理：正在配置。")
    expect(page.get_by_test_id("vm-detail").get_by_test_id("phase").first).to_have_text(
        "运行中", timeout=PHASE_TIMEOUT
    )

    # The choice is the user's: another browser signed in as bob is in Chinese too.
    other = new_page()
    login(other, live_url, "bob")
    other.goto(f"{live_url}/t/acme/vms/")
    expect(other.get_by_role("heading", name="虚拟机", level=1)).to_be_visible()

    # And back.
    page.goto(f"{live_url}/t/acme/vms/")
    switch_language(page, "语言: 简体中文", "English")
    page.wait_for_url(f"{live_url}/t/acme/vms/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Virtual machines", level=1)).to_be_visible()
    expect(page.locator('tr[data-live-name="web-2"]').get_by_test_id("phase")).to_have_text(
        "Running", timeout=PHASE_TIMEOUT
    )
    assert UserPreference.objects.get(user=demo.bob).language == "en"


def test_a_signed_out_browser_that_asks_for_chinese_gets_the_sign_in_page_in_chinese(
    demo, live_url, browser
):
    context = browser.new_context(locale="zh-CN", viewport={"width": 1360, "height": 860})
    try:
        page = context.new_page()
        page.goto(f"{live_url}/login/")
        expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
        expect(page.get_by_role("button", name="登录")).to_be_visible()
        expect(page.get_by_label("用户名")).to_be_visible()
        assert_accessible(page, "sign-in page in Chinese")
        page.get_by_label("用户名").fill("carol")
        page.get_by_label("密码").fill("wrong")
        page.get_by_role("button", name="登录").click()
        expect(page.get_by_role("alert")).to_contain_text("用户名或密码错误")
    finally:
        context.close()


def test_the_words_pages_write_as_they_live_come_in_chinese_too(
    demo, make_host, tiny_image, live_url, new_page
):
    """What live.js and metrics.js write after the page loaded (the timeline's
    connection state, the banner of a lost connection, a metrics load that failed)
    comes from the JavaScript catalogue, not in English."""
    make_host("node-a")
    vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name="web-1", image="tiny", vcpus=1, memory_mib=256
    )
    UserPreference.objects.update_or_create(user=demo.bob, defaults={"language": "zh-hans"})
    sockets = []

    def unreachable_after_the_first(ws):
        sockets.append(ws)
        if len(sockets) > 1:
            ws.close(code=1011)
        else:
            ws.connect_to_server()

    page = new_page()
    login(page, live_url, "bob")
    page.route_web_socket(re.compile(r".*/ws/(\?.*)?$"), unreachable_after_the_first)
    page.goto(f"{live_url}/t/acme/events/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    status = page.get_by_test_id("live-status")
    expect(status).to_have_text(re.compile(r"^\s*实时\s*$"))
    sockets[0].close(code=4000)
    expect(status).to_contain_text("离线")
    expect(page.get_by_test_id("live-banner")).to_contain_text("实时更新已暂停", timeout=5000)
    expect(page.get_by_test_id("live-banner").get_by_role("button")).to_have_text("立即重新连接")

    page.route(re.compile(r".*/vms/web-1/metrics/.*"), lambda route: route.abort("connectionreset"))
    page.goto(f"{live_url}/t/acme/vms/web-1/")
    expect(page.get_by_test_id("metrics-status")).to_have_text("— 无法加载指标")
