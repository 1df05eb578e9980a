"""Bulk actions on the VM list: one confirmation for the ticked VMs, then each goes
through vm_action on its own (a VM in the wrong phase is skipped with the reason, the
others proceed), under the same permission map (a viewer cannot), never a 500."""

from __future__ import annotations

import pytest
from django.test import Client

from compute.choices import DesiredState, Phase
from compute.models import VirtualMachine
from compute.services import vms as vm_services
from tenants.choices import AuditOutcome
from tenants.models import AuditLog

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

LIST = "/t/acme/vms/"


@pytest.fixture
def world(demo, make_host, tiny_image, flavors):
    make_host("node-a", cpus=64, memory_mib=256 * 1024)
    for name, phase in [("a", Phase.RUNNING), ("b", Phase.RUNNING), ("c", Phase.STOPPED)]:
        vm = vm_services.vm_create(
            actor=None, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
        )
        VirtualMachine.objects.filter(pk=vm.pk).update(phase=phase)
    vm_services.vm_create(
        actor=None, tenant=demo.globex, name="g", image="tiny", vcpus=1, memory_mib=256
    )
    return demo


def post(user, data):
    client = Client()
    client.force_login(user)
    return client.post(LIST, data)


def desired(name: str) -> str:
    return VirtualMachine.objects.get(tenant__slug="acme", name=name).desired_state


def test_one_confirmation_then_each_vm_is_stopped_or_skipped_with_its_reason(world):
    page = post(world.bob, {"action": "stop", "obj": ["a", "b", "c"]})
    html = page.content.decode()
    assert page.status_code == 200 and 'data-testid="bulk-confirm"' in html
    assert "Stop 3 VMs?" in html
    assert desired("a") == DesiredState.RUNNING  # nothing happens before the confirmation

    html = post(world.bob, {"action": "stop", "obj": ["a", "b", "c"], "confirm": "yes"})
    html = html.content.decode()
    assert "Stop: 2 of 3 requested" in html
    assert 'data-name="a" data-outcome="ok"' in html and 'data-name="b" data-outcome="ok"' in html
    assert 'data-name="c" data-outcome="skipped"' in html
    assert "Cannot stop c while it is Stopped." in html
    assert (desired("a"), desired("b")) == (DesiredState.STOPPED, DesiredState.STOPPED)


def test_another_tenants_vm_is_reported_not_found_and_left_alone(world):
    html = post(world.alice, {"action": "delete", "obj": ["a", "g"], "confirm": "yes"})
    html = html.content.decode()
    assert 'data-name="a" data-outcome="ok"' in html
    assert "No VM named g in this tenant." in html
    assert VirtualMachine.objects.get(tenant__slug="globex", name="g").desired_state != (
        DesiredState.DELETED
    )
    assert desired("a") == DesiredState.DELETED


def test_a_viewer_cannot_and_the_refusal_is_audited(world):
    response = post(world.carol, {"action": "stop", "obj": ["a"], "confirm": "yes"})
    assert response.status_code == 403
    assert desired("a") == DesiredState.RUNNING
    assert AuditLog.objects.filter(actor=world.carol, outcome=AuditOutcome.DENIED).exists()
    # ... and the list offers carol no boxes to tick.
    client = Client()
    client.force_login(world.carol)
    html = client.get(LIST).content.decode()
    assert 'data-testid="vm-bulk"' not in html and "data-bulk-all" not in html


@pytest.mark.parametrize(
    "data, message",
    [
        ({"action": "reboot", "obj": ["a"]}, "Unknown bulk action &#x27;reboot&#x27;"),
        ({"action": "stop"}, "Tick the VMs to act on first."),
        ({"obj": ["a"]}, "Unknown bulk action &#x27;&#x27;"),
        ({"action": "stop", "obj": [f"v{i}" for i in range(101)]}, "At most 100 VMs at once."),
    ],
)
def test_a_bad_bulk_request_is_a_clear_message_and_changes_nothing(world, data, message):
    response = post(world.bob, {**data, "confirm": "yes"})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert desired("a") == DesiredState.RUNNING
