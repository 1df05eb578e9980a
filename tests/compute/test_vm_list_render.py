"""How the VM list's pager and rows read, after their markup moved from template loops
into Python (bench/pages.py: the page must stay the same for its reader)."""

from __future__ import annotations

import pytest

from compute.listing import page_window

pytestmark = pytest.mark.unit


def pager(number: int, last: int) -> str:
    """The pager as a reader sees it: [current], links as numbers, gaps as …"""
    shown = {"current": "[{}]", "link": "{}", "gap": "…"}
    return " ".join(shown[kind].format(page) for page, kind in page_window(number, last))


@pytest.mark.parametrize(
    "number, last, seen",
    [
        (1, 1, "[1]"),
        (1, 2, "[1] 2"),
        (2, 3, "1 [2] 3"),
        (1, 200, "[1] 2 3 … 200"),
        (2, 200, "1 [2] 3 4 … 200"),
        (4, 200, "1 2 3 [4] 5 6 … 200"),
        (5, 200, "1 … 3 4 [5] 6 7 … 200"),
        (100, 200, "1 … 98 99 [100] 101 102 … 200"),
        (197, 200, "1 … 195 196 [197] 198 199 200"),
        (196, 200, "1 … 194 195 [196] 197 198 … 200"),
        (200, 200, "1 … 198 199 [200]"),
        (4, 7, "1 2 3 [4] 5 6 7"),
        (1, 5, "[1] 2 3 … 5"),
    ],
)
def test_the_pager_shows_the_ends_two_pages_either_side_and_gaps(number, last, seen):
    assert pager(number, last) == seen


def test_the_pager_is_the_same_whichever_way_it_is_built():
    """The rule the template applied to every page number, now only to the few that can
    be shown: the same links for every page of lists up to 40 pages long."""
    for last in range(1, 41):
        for number in range(1, last + 1):
            walked = []
            for page in range(1, last + 1):
                if page == number:
                    walked.append((page, "current"))
                elif page in (1, last) or (page - 2 <= number and page + 2 >= number):
                    walked.append((page, "link"))
                elif page in (2, last - 1):
                    walked.append((page, "gap"))
            assert page_window(number, last) == walked, (number, last)


@pytest.fixture
def rows(demo, make_host, tiny_image):
    """acme's VMs: web1 running on node-a with a stored message, web2 pending on no host."""
    import uuid

    from compute.choices import Phase
    from compute.models import VirtualMachine

    host = make_host("node-a")
    for name, phase, on, message in [
        ("web1", Phase.RUNNING, host, "Starting requested by bob <&> co."),
        ("web2", Phase.PENDING, None, ""),
    ]:
        VirtualMachine.objects.create(
            uid=uuid.uuid4(),
            tenant=demo.acme,
            name=name,
            vcpus=2,
            memory_mib=2048,
            disk_gib=10,
            image=tiny_image,
            host=on,
            phase=phase,
            message=message,
        )
    return demo


def row(user, name: str, language: str = "en") -> str:
    import re

    from django.test import Client

    client = Client(headers={"accept-language": language})
    client.force_login(user)
    body = client.get("/t/acme/vms/").content.decode()
    found = re.search(rf'<tr data-live-kind="vm" data-live-name="{name}".*?</tr>', body, re.S)
    assert found, body
    return found.group(0)


def test_a_row_reads_as_before_for_an_operator(rows):
    from compute.models import VirtualMachine

    web1 = row(rows.bob, "web1")
    assert 'aria-label="Tick web1"' in web1 and 'name="obj" value="web1"' in web1
    assert '<a class="iso-vm-name" href="/t/acme/vms/web1/">web1</a>' in web1
    assert 'data-phase="Running"' in web1 and "Booting…" in web1
    # The stored message, escaped, in the title and the text; shown.
    assert 'title="Starting requested by bob &lt;&amp;&gt; co." >Starting' in web1
    assert '<i class="bi bi-memory"></i> 2 GiB' in web1 and "10 GiB" in web1
    assert '<span title="">Tiny guest</span>' in web1
    created = VirtualMachine.objects.get(name="web1").created
    assert f'datetime="{created.isoformat()}"' in web1
    assert f'title="{created:%Y-%m-%d %H:%M:%S} UTC">just now</time>' in web1
    assert 'data-live-action="stop"' in web1 and 'data-live-action="delete" hidden' not in web1
    assert 'data-testid="vm-host"' not in web1  # staff only
    web2 = row(rows.bob, "web2")
    assert 'data-live-hide-empty title="" hidden></div>' in web2


def test_a_row_in_chinese_for_a_viewer_and_with_the_host_for_staff(rows):
    from tenants import services

    web1 = row(rows.carol, "web1", "zh-hans")
    assert "iso-check" not in web1 and "iso-actions" not in web1  # a viewer acts on none
    assert "bob &lt;&amp;&gt; co 请求启动。" in web1
    services.membership_add(actor=None, tenant=rows.acme, user=rows.admin, role="admin")
    staff = row(rows.admin, "web2", "zh-hans")
    assert 'aria-label="勾选 web2"' in staff
    assert '<td class="font-monospace small" data-testid="vm-host">—</td>' in staff
    assert '<td class="font-monospace small" data-testid="vm-host">node-a</td>' in row(
        rows.admin, "web1"
    )


def test_a_row_leaves_out_the_confirmations_its_reader_turned_off(rows):
    from tenants import services
    from tenants.choices import Confirmation

    assert 'data-confirm="Reboot web1?' in row(rows.bob, "web1")
    services.preference_set_confirmation(
        user=rows.bob, confirmation=Confirmation.VM_REBOOT, ask=False
    )
    web1 = row(rows.bob, "web1")
    assert 'data-confirm="Reboot' not in web1 and 'data-confirm="Power off web1 at once?' in web1
    assert 'data-confirm="Delete web1?' in web1  # deleting always asks
    assert 'data-confirm="Reboot web1?' in row(rows.alice, "web1")  # bob's choice only


def test_the_pager_counts_what_the_filters_leave(demo, make_host, tiny_image):
    import uuid

    from django.test import Client

    from compute.choices import Phase
    from compute.models import VirtualMachine

    make_host()
    VirtualMachine.objects.bulk_create(
        VirtualMachine(
            uid=uuid.uuid4(),
            tenant=demo.acme,
            name=f"vm-{n:02d}",
            vcpus=1,
            memory_mib=256,
            image=tiny_image,
            phase=Phase.STOPPED if n % 2 else Phase.RUNNING,
        )
        for n in range(60)
    )
    client = Client()
    client.force_login(demo.carol)
    assert "1–50 of 60" in client.get("/t/acme/vms/").content.decode()
    assert (
        "26–30 of 30"
        in client.get("/t/acme/vms/?phase=Stopped&per_page=25&page=2").content.decode()
    )
    assert (
        "1–25 of 30"
        in client.get("/t/acme/vms/?q=vm-&label=&phase=Running&per_page=25").content.decode()
    )
