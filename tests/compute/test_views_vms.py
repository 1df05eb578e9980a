"""The VM pages as the server renders them: list, create form, detail, actions, overview.

No Celery worker: VMs stay where the test puts them. The browser tests drive the same
pages against a real worker.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from compute.choices import Phase
from compute.models import Image, VirtualMachine
from compute.services import vms as vm_services
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog, Quota
from tests.page_forms import page_form_data

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

LIST = "/t/acme/vms/"
NEW = "/t/acme/vms/new/"


@pytest.fixture
def world(demo, make_host, tiny_image, flavors):
    demo.host = make_host("node-a", cpus=64, memory_mib=256 * 1024)
    return demo


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_vm(demo, name="web1", phase=None, tenant=None) -> VirtualMachine:
    vm = vm_services.vm_create(
        actor=None, tenant=tenant or demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
    )
    if phase:
        VirtualMachine.objects.filter(pk=vm.pk).update(phase=phase)
        vm.refresh_from_db()
    return vm


def visible_actions(html: str, vm_name: str) -> list[str]:
    """The actions whose forms are not hidden, for one VM, in page order."""
    pattern = rf'action="/t/acme/vms/{vm_name}/([a-z-]+)/" data-live-action="[a-z-]+"( hidden)?'
    return [action for action, hidden in re.findall(pattern, html) if not hidden]


def form_data(**overrides) -> dict:
    image = Image.objects.get(name="tiny")
    data = {
        "name": "web1",
        "image": str(image.pk),
        "size": "custom",
        "vcpus": "1",
        "memory_mib": "256",
        "disk_gib": "0",
        "start": "on",
        "restart_policy": "OnFailure",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def quota_used(tenant) -> tuple:
    q = Quota.objects.get(tenant=tenant)
    return (q.used_vms, q.used_cpu, q.used_memory, q.used_storage)


# --- List -------------------------------------------------------------------------------
def test_the_list_shows_phase_size_image_and_the_actions_the_phase_allows(world):
    make_vm(world, "run1", phase=Phase.RUNNING)
    make_vm(world, "off1", phase=Phase.STOPPED)
    html = client_for(world.bob).get(LIST).content.decode()
    assert 'data-live-kind="vm" data-live-name="run1"' in html
    assert 'data-phase="Running" data-live-field="phase"' in html
    assert 'data-phase="Stopped" data-live-field="phase"' in html
    assert "1 vCPU" in html and "256 MiB" in html and "Tiny guest" in html
    assert visible_actions(html, "run1") == ["stop", "force-stop", "pause", "reboot", "delete"]
    assert visible_actions(html, "off1") == ["start", "delete"]
    assert "Create VM" in html


def test_a_viewer_sees_the_vms_but_no_buttons_and_no_create(world):
    make_vm(world, "run1", phase=Phase.RUNNING)
    html = client_for(world.carol).get(LIST).content.decode()
    assert "run1" in html
    assert "data-live-action" not in html and 'data-testid="vm-actions"' not in html
    assert "Create VM" not in html


def test_the_host_column_is_for_staff_only(world):
    make_vm(world, "run1")
    assert "node-a" not in client_for(world.alice).get(LIST).content.decode()
    html = client_for(world.admin).get(LIST).content.decode()
    assert 'data-testid="sort-host">Host' in html and "node-a" in html


def test_an_empty_list_offers_create_to_operators_only(world):
    assert "Create VM" in client_for(world.bob).get(LIST).content.decode()
    html = client_for(world.carol).get(LIST).content.decode()
    assert 'data-testid="vm-empty"' in html and "Create VM" not in html
    # ... and says what a viewer can do next instead.
    assert "Your role here is viewer: ask an operator or admin of ACME Corporation" in html
    assert 'href="/t/acme/members/">Members</a>' in html


def test_other_tenants_vms_are_not_listed_and_their_pages_are_404(world):
    make_vm(world, "secret", tenant=world.globex)
    bob = client_for(world.bob)
    assert "secret" not in bob.get(LIST).content.decode()
    assert bob.get("/t/globex/vms/").status_code == 404
    assert bob.get("/t/globex/vms/secret/").status_code == 404
    assert bob.get("/t/acme/vms/secret/").status_code == 404
    assert bob.post("/t/globex/vms/secret/stop/").status_code == 404
    assert client_for(world.dave).get(LIST).status_code == 404


def test_anonymous_users_are_sent_to_login(world):
    make_vm(world)
    for url in (LIST, NEW, f"{LIST}web1/"):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- Create -----------------------------------------------------------------------------
def test_the_form_shows_images_flavors_and_the_quota_left(world):
    tenant_services.quota_set(
        actor=world.admin, tenant=world.acme, limits={"vms": 3, "cpu": 8, "memory": 4096}
    )
    make_vm(world, "w1")
    html = client_for(world.bob).get(NEW).content.decode()
    assert "Tiny guest" in html
    assert re.search(
        r'for="size-small"><span class="fw-semibold">small</span>\s*'
        r'<span class="d-block small text-body-secondary">1 vCPU · 512 MiB · 1 GiB disk',
        html,
    )
    assert "2 of 3 VMs left" in html
    assert "7 of 8 cores left" in html
    assert "3,840 of 4,096 MiB left" in html


def test_a_viewer_cannot_open_the_form(world):
    assert client_for(world.carol).get(NEW).status_code == 403
    assert client_for(world.carol).post(NEW, form_data()).status_code == 403
    assert VirtualMachine.objects.count() == 0


def test_creating_from_the_form_redirects_to_the_new_vm(world):
    response = client_for(world.bob).post(NEW, form_data(start=None, restart_policy="Always"))
    assert response.status_code == 302 and response["Location"] == "/t/acme/vms/web1/"
    vm = VirtualMachine.objects.get(name="web1")
    assert (vm.vcpus, vm.memory_mib, vm.desired_state, vm.restart_policy) == (
        1,
        256,
        "stopped",
        "Always",
    )
    assert vm.created_by == world.bob


def test_a_flavor_sets_the_size_and_ignores_the_custom_fields(world):
    client_for(world.bob).post(NEW, form_data(size="medium", vcpus="9", memory_mib="1"))
    vm = VirtualMachine.objects.get(name="web1")
    assert (vm.vcpus, vm.memory_mib, vm.disk_gib) == (2, 1024, 10)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "Web1"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"name": "-x"}, "name"),
        ({"name": ""}, "name"),
        ({"vcpus": "0"}, "vcpus"),
        ({"vcpus": "65"}, "vcpus"),
        ({"memory_mib": "0"}, "memory_mib"),
        ({"memory_mib": "99999999"}, "memory_mib"),
        ({"disk_gib": "-1"}, "disk_gib"),
        ({"vcpus": "two"}, "vcpus"),
        ({"image": "999999"}, "image"),
        ({"restart_policy": "Sometimes"}, "restart_policy"),
        ({"size": "huge"}, "size"),
    ],
)
def test_bad_input_shows_a_field_error_and_creates_nothing(world, overrides, field):
    response = client_for(world.bob).post(NEW, form_data(**overrides))
    assert response.status_code == 400
    assert f'data-testid="error-{field}"' in response.content.decode()
    assert VirtualMachine.objects.count() == 0
    assert quota_used(world.acme) == (0, 0, 0, 0)


def test_another_tenants_private_image_is_not_offered_nor_accepted(world):
    private = Image.objects.create(
        name="globex-gold",
        display_name="Globex gold",
        kind="kernel",
        kernel_path="/k",
        initrd_path="/i",
        public=False,
        tenant=world.globex,
    )
    bob = client_for(world.bob)
    assert "Globex gold" not in bob.get(NEW).content.decode()
    response = bob.post(NEW, form_data(image=str(private.pk)))
    assert 'data-testid="error-image"' in response.content.decode()
    assert VirtualMachine.objects.count() == 0


def test_a_taken_name_is_a_field_error(world):
    make_vm(world, "web1")
    response = client_for(world.bob).post(NEW, form_data())
    assert 'data-testid="error-name"' in response.content.decode()
    assert VirtualMachine.objects.count() == 1


def test_quota_refusals_land_on_the_field_they_are_about(world):
    tenant_services.quota_set(
        actor=world.admin, tenant=world.acme, limits={"cpu": 2, "memory": 1024, "storage": 5}
    )
    bob = client_for(world.bob)
    html = bob.post(NEW, form_data(vcpus="3")).content.decode()
    assert re.search(r'data-testid="error-vcpus">Quota exceeded for cpu', html)
    html = bob.post(NEW, form_data(memory_mib="2048")).content.decode()
    assert 'data-testid="error-memory_mib">Quota exceeded for memory' in html
    html = bob.post(NEW, form_data(disk_gib="6")).content.decode()
    assert 'data-testid="error-disk_gib">Quota exceeded for storage' in html
    html = bob.post(NEW, form_data(size="medium")).content.decode()  # 2 vCPU + 10 GiB
    assert 'data-testid="error-size">Quota exceeded for storage' in html
    assert VirtualMachine.objects.count() == 0
    assert quota_used(world.acme) == (0, 0, 0, 0)


def test_the_vm_count_quota_is_a_form_error(world):
    tenant_services.quota_set(actor=world.admin, tenant=world.acme, limits={"vms": 0})
    html = client_for(world.bob).post(NEW, form_data()).content.decode()
    assert 'data-testid="form-errors"' in html and "Quota exceeded for vms" in html
    assert VirtualMachine.objects.count() == 0


def test_no_host_with_room_is_a_form_error(world):
    world.host.maintenance = True
    world.host.save()
    html = client_for(world.bob).post(NEW, form_data()).content.decode()
    assert 'data-testid="form-errors"' in html and "hosts can take this VM" in html
    assert VirtualMachine.objects.count() == 0
    assert quota_used(world.acme) == (0, 0, 0, 0)


# --- Detail -----------------------------------------------------------------------------
def test_the_detail_page_shows_spec_status_actions_and_events(world):
    make_vm(world, "web1", phase=Phase.FAILED)
    VirtualMachine.objects.filter(name="web1").update(message="The host said no.")
    html = client_for(world.bob).get(f"{LIST}web1/").content.decode()
    assert 'data-testid="vm-detail"' in html and 'data-live-name="web1"' in html
    assert "The host said no." in html
    assert visible_actions(html, "web1") == ["start", "force-stop", "delete"]
    assert "Scheduled" in html  # the event vm_create published
    assert "node-a" not in html


def test_a_page_declares_the_live_seq_read_before_what_it_shows(world):
    """A VM's state published (by another process) while its page reads the VM comes
    after the seq the page declares as its baseline, so the page's live.js resyncs it.
    Were the baseline read after the VM, the page would claim to hold a state it does
    not show, and keep showing the old phase."""
    import json
    import threading

    from django.db import connection

    from monitoring import live
    from monitoring.services import resource_publish

    vm = make_vm(world, phase=Phase.STARTING)
    before = live.seq_current("tenant.acme")
    published = []

    def publish_elsewhere():
        resource_publish(tenant=world.acme, kind="vm", name=vm.name, data={"phase": "Running"})

    def publish_after_the_vm_is_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not published and sql.startswith("SELECT") and "compute_virtualmachine" in sql:
            published.append(True)
            other = threading.Thread(target=publish_elsewhere)
            other.start()
            other.join()
        return result

    with connection.execute_wrapper(publish_after_the_vm_is_read):
        response = client_for(world.bob).get(f"/t/acme/vms/{vm.name}/")
    assert response.status_code == 200 and published
    assert live.seq_current("tenant.acme") == before + 1
    html = response.content.decode()
    declared = re.search(r'id="isotope-live-baseline" type="application/json">(.*?)<', html)
    assert json.loads(declared.group(1)) == {"tenant.acme": before}


def test_staff_see_the_host_on_the_detail_page(world):
    make_vm(world, "web1")
    assert "node-a" in client_for(world.admin).get(f"{LIST}web1/").content.decode()


# --- Labels -----------------------------------------------------------------------------
def test_an_operator_edits_the_labels_and_a_viewer_sees_them_read_only(world):
    vm = make_vm(world, "web1", phase=Phase.RUNNING)
    VirtualMachine.objects.filter(pk=vm.pk).update(labels={"app": "web"})
    viewer = client_for(world.carol).get(f"{LIST}web1/").content.decode()
    assert "app=web" in viewer and 'data-testid="vm-edit-labels"' not in viewer
    assert "/t/acme/vms/web1/labels/" not in viewer

    bob = client_for(world.bob)
    page = bob.get(f"{LIST}web1/").content.decode()
    assert 'data-testid="vm-edit-labels"' in page
    assert re.search(r'<textarea[^>]*name="labels"[^>]*>\s*app=web</textarea>', page)
    response = bob.post(
        f"{LIST}web1/labels/", {"labels": "app = api\n\nexample.com/tier=front\n"}, follow=True
    )
    assert response.redirect_chain[-1][0] == f"{LIST}web1/"
    html = response.content.decode()
    assert "The labels of web1 are now: app=api, example.com/tier=front." in html
    assert VirtualMachine.objects.get(pk=vm.pk).labels == {
        "app": "api",
        "example.com/tier": "front",
    }
    assert AuditLog.objects.filter(action="vm.relabel", actor=world.bob).exists()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("app=web\njust-a-word", "Write each label as key=value, e.g. app=web: just-a-word"),
        ("app=web\napp=api", "The label app is given twice."),
        ("bad key=x", "Invalid key &#x27;bad key&#x27;"),
        ("app=-web", "Invalid value for &#x27;app&#x27;"),
    ],
)
def test_bad_labels_come_back_on_the_field_as_typed_and_change_nothing(world, text, words):
    vm = make_vm(world, "web1", phase=Phase.STOPPED)
    response = client_for(world.bob).post(f"{LIST}web1/labels/", {"labels": text})
    assert response.status_code == 400
    html = response.content.decode()
    assert words in html and 'data-testid="error-labels"' in html
    assert re.search(r'data-testid="vm-edit-labels" open', html)
    assert text.splitlines()[-1] in html  # the lines as typed
    fresh = VirtualMachine.objects.get(pk=vm.pk)
    assert (fresh.labels, fresh.resource_version) == ({}, vm.resource_version)


# --- Actions ----------------------------------------------------------------------------
def test_stop_asks_the_service_and_returns_with_a_message(world):
    vm = make_vm(world, "web1", phase=Phase.RUNNING)
    bob = client_for(world.bob)
    response = bob.post(f"{LIST}web1/stop/", {"next": LIST}, follow=True)
    assert response.redirect_chain[-1][0] == LIST
    assert "Stop requested for web1" in response.content.decode()
    vm.refresh_from_db()
    assert (vm.phase, vm.desired_state) == (Phase.STOPPING, "stopped")


def test_an_action_in_the_wrong_phase_is_a_message_and_changes_nothing(world):
    vm = make_vm(world, "web1", phase=Phase.STOPPED)
    response = client_for(world.bob).post(f"{LIST}web1/pause/", follow=True)
    assert "Cannot pause web1 while it is Stopped" in response.content.decode()
    fresh = VirtualMachine.objects.get(pk=vm.pk)
    assert fresh.resource_version == vm.resource_version


@pytest.mark.parametrize("action", ["delete", "force-stop", "reboot"])
def test_destructive_actions_need_a_confirmation(world, action):
    vm = make_vm(world, "web1", phase=Phase.RUNNING)
    bob = client_for(world.bob)
    for response in (bob.get(f"{LIST}web1/{action}/"), bob.post(f"{LIST}web1/{action}/")):
        assert response.status_code == 200
        assert 'data-testid="vm-confirm-page"' in response.content.decode()
    assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING
    response = bob.post(f"{LIST}web1/{action}/", {"confirm": "yes"})
    assert response.status_code == 302
    expected = {"delete": Phase.DELETING, "force-stop": Phase.STOPPING}.get(action, Phase.RUNNING)
    assert VirtualMachine.objects.get(pk=vm.pk).phase == expected
    assert AuditLog.objects.filter(action=f"vm.{action}", outcome=AuditOutcome.SUCCESS).exists()


def test_without_javascript_the_confirmation_page_names_the_vm_and_can_stop_asking(world):
    vm = make_vm(world, "web1", phase=Phase.RUNNING)
    bob = client_for(world.bob)
    html = bob.get(f"{LIST}web1/reboot/").content.decode()
    assert "Reboot web1? The guest restarts" in html and "{name}" not in html
    assert 'name="dont_ask_again"' in html
    assert 'name="dont_ask_again"' not in bob.get(f"{LIST}web1/delete/").content.decode()

    response = bob.post(f"{LIST}web1/reboot/", {"confirm": "yes", "dont_ask_again": "1"})
    assert response.status_code == 302
    assert tenant_selectors.confirmations_skipped(world.bob) == {"vm.reboot"}
    # From now on bob's reboot goes straight through; the buttons carry no question.
    detail = bob.get(f"{LIST}web1/").content.decode()
    assert 'data-confirm="Reboot' not in detail and 'data-confirm="Power off' in detail
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    assert bob.post(f"{LIST}web1/reboot/").status_code == 302
    # Deleting still asks.
    assert 'data-testid="vm-confirm-page"' in bob.post(f"{LIST}web1/delete/").content.decode()


def test_a_viewer_cannot_act_and_the_refusal_is_audited(world):
    vm = make_vm(world, "web1", phase=Phase.RUNNING)
    carol = client_for(world.carol)
    assert carol.post(f"{LIST}web1/stop/").status_code == 403
    assert carol.post(f"{LIST}web1/delete/", {"confirm": "yes"}).status_code == 403
    assert carol.get(f"{LIST}web1/delete/").status_code == 403
    assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING
    assert AuditLog.objects.filter(actor=world.carol, outcome=AuditOutcome.DENIED).count() == 3


def test_next_never_leaves_the_site(world):
    make_vm(world, "web1", phase=Phase.RUNNING)
    response = client_for(world.bob).post(f"{LIST}web1/stop/", {"next": "https://evil.example/"})
    assert response["Location"] == "/t/acme/vms/web1/"


def test_unknown_actions_do_not_exist(world):
    make_vm(world, "web1", phase=Phase.RUNNING)
    assert client_for(world.bob).post(f"{LIST}web1/explode/").status_code == 404


# --- Overview ---------------------------------------------------------------------------
def test_the_overview_summarises_the_vms_by_phase(world):
    make_vm(world, "a1", phase=Phase.RUNNING)
    make_vm(world, "a2", phase=Phase.RUNNING)
    make_vm(world, "a3", phase=Phase.STOPPED)
    make_vm(world, "g1", tenant=world.globex)
    html = client_for(world.carol).get("/t/acme/").content.decode()
    summary = html[html.index('data-testid="vm-summary"') :]
    assert '<span class="fw-semibold">3</span> VMs' in summary
    assert re.search(r'2\s*<span class="iso-phase" data-phase="Running"', summary)
    assert re.search(r'1\s*<span class="iso-phase" data-phase="Stopped"', summary)
    assert "a3" in summary and "g1" not in summary


# --- Role matrix over every VM page -----------------------------------------------------
# who → status for: list, detail, create form, create POST, stop POST, delete confirm
# page, labels POST
WEB_MATRIX = {
    "anonymous": (302, 302, 302, 302, 302, 302, 302),
    "outsider": (404, 404, 404, 404, 404, 404, 404),
    "dave": (404, 404, 404, 404, 404, 404, 404),
    "carol": (200, 200, 403, 403, 403, 403, 403),
    "bob": (200, 200, 200, 302, 302, 200, 302),
    "alice": (200, 200, 200, 302, 302, 200, 302),
    "admin": (200, 200, 200, 302, 302, 200, 302),
}


@pytest.mark.parametrize("who", list(WEB_MATRIX))
def test_the_role_matrix_for_every_vm_page(world, who):
    vm = make_vm(world, "run1", phase=Phase.RUNNING)
    client = Client() if who == "anonymous" else client_for(getattr(world, who))
    got = (
        client.get(LIST).status_code,
        client.get(f"{LIST}run1/").status_code,
        client.get(NEW).status_code,
        client.post(NEW, form_data(name="new1")).status_code,
        client.post(f"{LIST}run1/stop/").status_code,
        client.get(f"{LIST}run1/delete/").status_code,
        client.post(f"{LIST}run1/labels/", {"labels": "app=web"}).status_code,
    )
    assert got == WEB_MATRIX[who]
    allowed = WEB_MATRIX[who][3] == 302 and who != "anonymous"
    assert VirtualMachine.objects.filter(name="new1").exists() == allowed
    assert (VirtualMachine.objects.get(pk=vm.pk).phase == Phase.STOPPING) == allowed
    assert (VirtualMachine.objects.get(pk=vm.pk).labels == {"app": "web"}) == allowed


def many_vms(demo, make_host, phase_of) -> None:
    """vm-000 … vm-129 in acme, bulk-inserted; ``phase_of(n)`` gives each its phase."""
    import uuid

    from compute.models import Host, Image, VirtualMachine

    make_host()
    host, image = Host.objects.get(), Image.objects.get()
    VirtualMachine.objects.bulk_create(
        VirtualMachine(
            uid=uuid.uuid4(),
            tenant=demo.acme,
            name=f"vm-{n:03d}",
            vcpus=1,
            memory_mib=256,
            image=image,
            host=host,
            phase=phase_of(n),
        )
        for n in range(130)
    )


def test_the_vm_list_pages_long_lists(client, demo, make_host, tiny_image):
    from compute.choices import Phase

    many_vms(demo, make_host, lambda n: Phase.RUNNING)
    client.force_login(demo.carol)
    first = client.get("/t/acme/vms/")
    assert first.status_code == 200
    body = first.content.decode()
    # 50 rows per page unless the reader picks 25 or 100.
    assert body.count('data-vm="') == 50
    assert 'data-vm="vm-000"' in body and 'data-vm="vm-050"' not in body
    assert "1–50 of 130" in body
    assert '<span class="fw-semibold" aria-current="true">50</span>' in body
    assert '<a href="?per_page=100">100</a>' in body and '<a href="?per_page=25">25</a>' in body
    third = client.get("/t/acme/vms/?page=3").content.decode()
    assert third.count('data-vm="') == 30 and 'data-vm="vm-129"' in third
    # A page number past the end shows the last page rather than an error.
    assert client.get("/t/acme/vms/?page=99").content.decode().count('data-vm="') == 30
    # 100 per page; the choice stays in the page links, the sort links and the filter form.
    hundred = client.get("/t/acme/vms/?per_page=100&sort=-name").content.decode()
    assert hundred.count('data-vm="') == 100 and "1–100 of 130" in hundred
    assert 'href="?sort=-name&amp;per_page=100&amp;page=2"' in hundred
    assert '<input type="hidden" name="per_page" value="100">' in hundred
    second = client.get("/t/acme/vms/?per_page=100&page=2").content.decode()
    assert second.count('data-vm="') == 30
    # Anything else is a clear error on the page, and the default rows are shown.
    wrong = client.get("/t/acme/vms/?per_page=1000")
    assert wrong.status_code == 400
    assert "Rows per page is one of 25, 50, 100." in wrong.content.decode()
    assert wrong.content.decode().count('data-vm="') == 50


def test_a_search_pages_through_its_matches_with_their_count(client, demo, make_host, tiny_image):
    from compute.choices import Phase

    many_vms(demo, make_host, lambda n: Phase.RUNNING if n % 2 else Phase.STOPPED)
    client.force_login(demo.carol)

    def rows(query: str) -> tuple[list[str], str]:
        body = client.get("/t/acme/vms/?per_page=25&" + query).content.decode()
        return re.findall(r'data-vm="([^"]+)"', body), body

    # vm-100 … vm-129 match "vm-1": 30 of the 130.
    first, body = rows("q=vm-1")
    assert first == [f"vm-{n}" for n in range(100, 125)] and "1–25 of 30" in body
    second, body = rows("q=vm-1&page=2")
    assert second == [f"vm-{n}" for n in range(125, 130)] and "26–30 of 30" in body
    # Past the last page: the last page; not a number: the first; as without a search.
    assert rows("q=vm-1&page=9")[0] == second
    assert rows("q=vm-1&page=0")[0] == second
    assert rows("q=vm-1&page=two")[0] == first
    # Combined with a filter and a sort; nothing matching is an empty list.
    running, body = rows("q=vm-1&phase=Running&sort=-name")
    assert running == [f"vm-{n}" for n in range(129, 99, -2)]
    assert 'data-testid="vm-pages"' not in body  # 15 fit on one page: no pager
    assert rows("q=nothing-like-it")[0] == []


def test_the_form_gives_the_first_vm_an_interface_on_the_default_network(world):
    from compute.models import Network, NetworkInterface

    page = client_for(world.bob).get(NEW).content.decode()
    assert "default (made with this VM)" in page  # no network yet: the VM brings it
    response = client_for(world.bob).post(NEW, form_data(networks=["default"]))
    assert response.status_code == 302
    nic = NetworkInterface.objects.select_related("network").get(vm__name="web1")
    assert (nic.name, nic.network.name) == ("nic0", "default")
    assert Network.objects.get(tenant=world.acme, name="default").is_default
    page = client_for(world.bob).get(NEW).content.decode()
    assert f"default ({nic.network.cidr})" in page
    refused = client_for(world.bob).post(NEW, form_data(name="web2", networks=["nope"]))
    assert refused.status_code == 400 and "nope" in refused.content.decode()
    assert not VirtualMachine.objects.filter(name="web2").exists()


def test_a_labels_form_opened_before_a_colleagues_change_applies_only_its_own_edit(world):
    """bob's page shows app=web, tier=front; alice then adds svc=lb (a Service selects
    by it). bob, on his page, changes app and removes tier: svc=lb stays."""
    vm = make_vm(world, "web1", phase=Phase.RUNNING)
    VirtualMachine.objects.filter(pk=vm.pk).update(labels={"app": "web", "tier": "front"})
    bob = client_for(world.bob)
    sent = page_form_data(bob.get(f"{LIST}web1/").content.decode(), "vm-edit-labels-form")
    assert sent["labels"] == "app=web\ntier=front"
    vm_services.vm_relabel(
        actor=world.alice,
        vm=VirtualMachine.objects.get(pk=vm.pk),
        labels={"app": "web", "tier": "front", "svc": "lb"},
    )

    response = bob.post(f"{LIST}web1/labels/", {**sent, "labels": "app=api"}, follow=True)

    assert "The labels of web1 are now: app=api, svc=lb." in response.content.decode()
    assert VirtualMachine.objects.get(pk=vm.pk).labels == {"app": "api", "svc": "lb"}


def test_a_label_changed_on_the_page_and_by_a_colleague_is_refused_and_nothing_saved(world):
    vm = make_vm(world, "web1", phase=Phase.RUNNING)
    VirtualMachine.objects.filter(pk=vm.pk).update(labels={"app": "web", "tier": "front"})
    bob = client_for(world.bob)
    sent = page_form_data(bob.get(f"{LIST}web1/").content.decode(), "vm-edit-labels-form")
    vm_services.vm_relabel(
        actor=world.alice, vm=VirtualMachine.objects.get(pk=vm.pk), labels={"app": "web"}
    )

    response = bob.post(f"{LIST}web1/labels/", {**sent, "labels": "app=api\ntier=back"})

    assert response.status_code == 400
    assert (
        "The labels of web1 were changed by someone else since you opened this page "
        "(now tier (removed)); reload to see the change. Nothing was saved."
    ) in response.content.decode()
    assert VirtualMachine.objects.get(pk=vm.pk).labels == {"app": "web"}
