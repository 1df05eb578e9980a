"""A workload's security groups in the browser (a cluster nobody reaches: the pages, not
the rollout, are tested here; the kubernetes tier moves real pods): an operator opens
"Edit groups" on the workload's page, checks two groups and saves; the page and a
viewer's open page of the same workload show the new groups at once (the live stream),
the change is on its timeline, and the group's page lists the workload. Saving with no
group checked is refused and changes nothing."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.services import security_groups as group_services
from compute.services import workloads as workload_services
from tests.compute.conftest import fake_cluster  # noqa: F401
from tests.conftest import ARTIFACTS, login

pytestmark = pytest.mark.e2e


def test_an_operator_moves_a_workloads_pods_into_groups_and_a_viewer_sees_it_live(
    demo,
    fake_cluster,  # noqa: F811
    live_url,
    new_page,
    axe,
):
    group_services.default_group(demo.acme)
    for name in ("web", "db"):
        group_services.group_create(actor=None, tenant=demo.acme, name=name, rules=[])
    workload_services.workload_create(
        actor=None, tenant=demo.acme, name="front", image="nginx:1.27"
    )
    viewer = new_page()
    login(viewer, live_url, "carol")
    viewer.goto(f"{live_url}/t/acme/workloads/front/")
    expect(viewer.get_by_test_id("workload-groups")).to_have_text("default")
    expect(viewer.get_by_test_id("workload-edit-groups")).to_have_count(0)

    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/workloads/front/")
    editor = page.get_by_test_id("workload-edit-groups")
    editor.get_by_text("Edit groups").click()
    expect(editor.get_by_label("default")).to_be_checked()
    editor.get_by_label("default").uncheck()
    editor.get_by_label("web").check()
    editor.get_by_label("db").check()
    editor.get_by_role("button", name="Save groups").click()

    expect(page.get_by_text("The pods of front are in db, web now.")).to_be_visible()
    expect(page.get_by_test_id("workload-groups").get_by_role("link")).to_have_text(["db", "web"])
    expect(page.get_by_test_id("workload-events")).to_contain_text(
        "bob put its pods in db, web (were in default)."
    )
    # The viewer's page redraws from the live stream, links included.
    groups = viewer.get_by_test_id("workload-groups")
    expect(groups.get_by_role("link")).to_have_text(["db", "web"])
    expect(groups.get_by_role("link", name="web")).to_have_attribute(
        "href", "/t/acme/securitygroups/web/"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.get_by_test_id("workload-spec").screenshot(path=str(ARTIFACTS / "workload-groups.png"))
    axe(page, "workload-groups")

    # Nothing checked: refused, nothing changed.
    editor = page.get_by_test_id("workload-edit-groups")
    editor.get_by_text("Edit groups").click()
    editor.get_by_label("web").uncheck()
    editor.get_by_label("db").uncheck()
    editor.get_by_role("button", name="Save groups").click()
    expect(page.get_by_text("Choose at least one security group.")).to_be_visible()
    expect(page.get_by_test_id("workload-groups").get_by_role("link")).to_have_text(["db", "web"])

    # The group's page lists the workload whose pods are in it.
    groups.get_by_role("link", name="web").click()
    members = viewer.get_by_test_id("securitygroup-workloads")
    expect(members.get_by_role("link", name="front")).to_be_visible()
    viewer.get_by_test_id("securitygroup-workloads").screenshot(
        path=str(ARTIFACTS / "securitygroup-workloads.png")
    )
    axe(viewer, "securitygroup-workloads")
