"""The VM list's search, filters and sort, read from the URL: what each finds, that a
bad value is a clear message (400) and never a 500, and that host is for staff only."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from compute.choices import Phase
from compute.models import VirtualMachine
from compute.services import vms as vm_services

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

LIST = "/t/acme/vms/"


@pytest.fixture
def world(demo, make_host, tiny_image, flavors):
    demo.node_a = make_host("node-a", cpus=64, memory_mib=256 * 1024)
    demo.node_b = make_host("node-b", cpus=64, memory_mib=256 * 1024)
    for name, phase, host, labels in [
        ("web-1", Phase.RUNNING, demo.node_a, {"tier": "web", "env": "prod"}),
        ("web-2", Phase.STOPPED, demo.node_b, {"tier": "web", "env": "dev"}),
        ("db-1", Phase.RUNNING, demo.node_b, {"tier": "db"}),
    ]:
        vm = vm_services.vm_create(
            actor=None,
            tenant=demo.acme,
            name=name,
            image="tiny",
            vcpus=1,
            memory_mib=256,
            labels=labels,
        )
        VirtualMachine.objects.filter(pk=vm.pk).update(phase=phase, host=host)
    vm_services.vm_create(
        actor=None, tenant=demo.globex, name="web-9", image="tiny", vcpus=1, memory_mib=256
    )
    return demo


def shown(user, query: str = "", status: int = 200) -> list[str]:
    client = Client()
    client.force_login(user)
    response = client.get(LIST + query)
    assert response.status_code == status, response.content[:500]
    return re.findall(r'data-live-kind="vm" data-live-name="([^"]+)"', response.content.decode())


def page(user, query: str):
    client = Client()
    client.force_login(user)
    return client.get(LIST + query)


def test_search_phase_and_label_filters_narrow_the_list_and_combine(world):
    assert shown(world.carol) == ["db-1", "web-1", "web-2"]
    assert shown(world.carol, "?q=WEB") == ["web-1", "web-2"]
    assert shown(world.carol, "?phase=Running") == ["db-1", "web-1"]
    assert shown(world.carol, "?label=tier=web") == ["web-1", "web-2"]
    assert shown(world.carol, "?label=env") == ["web-1", "web-2"]
    assert shown(world.carol, "?label=env%3Dprod&phase=Running&q=web") == ["web-1"]


def test_columns_sort_both_ways_and_the_header_says_how(world):
    assert shown(world.carol, "?sort=-name") == ["web-2", "web-1", "db-1"]
    assert shown(world.carol, "?sort=phase") == ["db-1", "web-1", "web-2"]
    html = page(world.carol, "?sort=-name&phase=Running").content.decode()
    header = '<th aria-sort="descending"><a class="iso-sort" href="?phase=Running&amp;sort=name"'
    assert header in html
    # Pagination and the other columns keep the filters.
    assert 'href="?phase=Running&amp;sort=created"' in html


def test_nothing_matching_says_so_and_offers_the_way_back(world):
    html = page(world.carol, "?q=nope").content.decode()
    assert 'data-testid="vm-no-match"' in html and 'href="?">Show all VMs' in html
    assert 'data-testid="vm-empty"' not in html


@pytest.mark.parametrize(
    "query, message",
    [
        ("?phase=Sleeping", "Unknown phase &#x27;Sleeping&#x27;: choose one of Pending"),
        ("?sort=size", "Cannot sort by &#x27;size&#x27;: choose one of name, phase, created."),
        ("?label=-bad-", "Label filter: Invalid key &#x27;-bad-&#x27;"),
        ("?label==x", "A label filter is key or key=value."),
        ("?q=" + "x" * 201, "The search is at most 200 characters."),
        ("?host=node-a", "Only platform staff can filter by host."),
        ("?sort=host", "Cannot sort by &#x27;host&#x27;"),
        ("?page=zzz&phase=running", "Unknown phase &#x27;running&#x27;"),
    ],
)
def test_a_bad_value_is_a_clear_message_and_that_filter_is_left_out(world, query, message):
    response = page(world.carol, query)
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert len(re.findall(r'data-live-kind="vm" ', html)) == 3


def test_staff_filter_and_sort_by_host_and_an_unknown_host_is_a_message(world):
    assert shown(world.admin, "?host=node-b") == ["db-1", "web-2"]
    assert shown(world.admin, "?sort=-host") == ["db-1", "web-2", "web-1"]
    response = page(world.admin, "?host=node-z")
    assert response.status_code == 400
    assert "Unknown host &#x27;node-z&#x27;." in response.content.decode()
    # Members see no host filter at all.
    assert 'id="filter-host"' not in page(world.carol, "").content.decode()
    assert 'id="filter-host"' in page(world.admin, "").content.decode()


def test_another_tenants_vms_never_match(world):
    assert shown(world.carol, "?q=web-9") == []
    assert page(world.dave, "?q=web").status_code == 404
