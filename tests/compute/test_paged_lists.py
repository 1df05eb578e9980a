"""The volume, workload and backup pages show a page of rows at a time, as the VM list
does: 25, 50 (default) or 100 per page (``?per_page=``), the page in the URL
(``?page=``), a name search (``?q=``); a page past the end is the last page, a page that
is not a number the first, a rows-per-page value not offered a 400 page saying so with
the default rows. Another tenant's objects never appear."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from compute.choices import BackupPhase, Phase, VolumePhase
from compute.models import Backup, Volume, Workload
from tests.compute.conftest import fake_cluster  # noqa: F401 - fixture

pytestmark = [pytest.mark.unit, pytest.mark.libvirt_test_driver]

ROWS = 60


def seed_volumes(tenant, count: int, prefix: str = "vol") -> None:
    """``<prefix>-000`` … Ready, unattached, bulk-inserted."""
    Volume.objects.bulk_create(
        Volume(tenant=tenant, name=f"{prefix}-{n:03d}", size_gib=1, phase=VolumePhase.READY)
        for n in range(count)
    )


def seed_workloads(tenant, cluster, count: int, prefix: str = "app") -> None:
    Workload.objects.bulk_create(
        Workload(
            tenant=tenant,
            cluster=cluster,
            name=f"{prefix}-{n:03d}",
            image="nginx:1.27",
            cpu_request_m=100,
            cpu_limit_m=100,
            memory_request=64 * 2**20,
            memory_limit=64 * 2**20,
            phase=Phase.RUNNING,
        )
        for n in range(count)
    )


def seed_backups(tenant, count: int, prefix: str = "bak") -> None:
    """``<prefix>-000`` the oldest: the list, newest first, starts at the last one."""
    Backup.objects.bulk_create(
        Backup(
            tenant=tenant,
            name=f"{prefix}-{n:03d}",
            vm_name="web1",
            snapshot_name="s1",
            phase=BackupPhase.READY,
            progress=100,
        )
        for n in range(count)
    )
    start = timezone.now() - timedelta(days=1)
    for n in range(count):
        Backup.objects.filter(tenant=tenant, name=f"{prefix}-{n:03d}").update(
            created=start + timedelta(minutes=n)
        )


@pytest.fixture
def world(demo, fake_cluster):  # noqa: F811
    seed_volumes(demo.acme, ROWS)
    seed_volumes(demo.globex, 3)  # same names: never on acme's pages
    seed_workloads(demo.acme, fake_cluster, ROWS)
    seed_workloads(demo.globex, fake_cluster, 3, prefix="app-9")
    seed_backups(demo.acme, ROWS)
    seed_backups(demo.globex, 3, prefix="bak-9")
    demo.client = Client()
    demo.client.force_login(demo.carol)  # a viewer of acme
    return demo


# kind → (URL, the row attribute naming each row, names in list order)
LISTS = {
    "volume": ("/t/acme/volumes/", "data-volume", [f"vol-{n:03d}" for n in range(ROWS)]),
    "workload": ("/t/acme/workloads/", "data-workload", [f"app-{n:03d}" for n in range(ROWS)]),
    "backup": (
        "/t/acme/backups/",
        "data-backup-row",
        [f"bak-{n:03d}" for n in reversed(range(ROWS))],
    ),
}


def rows(world, kind: str, query: str = "") -> tuple[list[str], str, int]:
    url, attribute, _ = LISTS[kind]
    response = world.client.get(url + ("?" + query if query else ""))
    body = response.content.decode()
    shown = body.split("<template")[0]  # not the backups' row template
    return re.findall(rf'{attribute}="([^"]+)"', shown), body, response.status_code


@pytest.mark.parametrize("kind", LISTS)
def test_pages_one_and_two_show_the_right_rows_in_order(world, kind):
    order = LISTS[kind][2]
    first, body, status = rows(world, kind, "per_page=25")
    assert status == 200 and first == order[:25]
    assert "1–25 of 60" in body
    assert f'data-testid="{kind}-pages"' in body
    assert '<span class="fw-semibold" aria-current="true">25</span>' in body
    assert 'href="?per_page=25&amp;page=2"' in body
    second, body, _ = rows(world, kind, "per_page=25&page=2")
    assert second == order[25:50] and "26–50 of 60" in body
    # 50 by default, 100 on request.
    assert rows(world, kind)[0] == order[:50]
    assert rows(world, kind, "per_page=100")[0] == order


@pytest.mark.parametrize("kind", LISTS)
def test_bad_pages_and_rows_per_page_are_handled_as_on_the_vm_list(world, kind):
    order = LISTS[kind][2]
    # Past the end or below 1: the last page; not a number: the first.
    assert rows(world, kind, "per_page=25&page=99")[0] == order[50:]
    assert rows(world, kind, "per_page=25&page=0")[0] == order[50:]
    assert rows(world, kind, "per_page=25&page=two")[0] == order[:25]
    # Rows per page not offered: a 400 page that says why, with the default 50 rows.
    wrong, body, status = rows(world, kind, "per_page=1000")
    assert status == 400 and wrong == order[:50]
    assert "Rows per page is one of 25, 50, 100." in body


@pytest.mark.parametrize("kind", LISTS)
def test_a_search_narrows_and_pages_its_matches(world, kind):
    order = LISTS[kind][2]
    stem = order[0][:3]
    found, body, status = rows(world, kind, f"q={stem}-01")
    assert status == 200 and found == [name for name in order if name.startswith(f"{stem}-01")]
    assert len(found) == 10
    assert f'data-testid="{kind}-pages"' not in body  # 10 fit on a page: no pager
    assert 'value="' + f"{stem}-01" + '"' in body  # the search box keeps it
    # A search's pages (their count from the matches, not the phase counts): all 60 match.
    second, body, _ = rows(world, kind, f"q={stem}-0&per_page=25&page=2")
    assert second == order[25:50] and "26–50 of 60" in body
    assert f'href="?q={stem}-0&amp;per_page=25&amp;page=3"' in body
    nothing, body, status = rows(world, kind, "q=nothing-like-it")
    assert status == 200 and nothing == []
    assert f'data-testid="{kind}-no-match"' in body


@pytest.mark.parametrize("kind", LISTS)
def test_another_tenants_objects_never_appear(world, kind):
    order = LISTS[kind][2]
    shown = []
    for page in (1, 2, 3):
        shown += rows(world, kind, f"per_page=25&page={page}")[0]
    assert shown == order  # acme's 60, none of globex's (same or similar names)
    assert rows(world, kind, "q=9-")[0] == []  # globex's app-9-…, bak-9-…
    dave = Client()
    dave.force_login(world.dave)  # globex only
    assert dave.get(LISTS[kind][0] + "?per_page=25").status_code == 404


def test_a_short_list_has_no_pager_and_no_search(demo):
    seed_volumes(demo.acme, 3)
    client = Client()
    client.force_login(demo.carol)
    body = client.get("/t/acme/volumes/").content.decode()
    assert body.count('data-volume="') == 3
    assert 'data-testid="volume-pages"' not in body and 'data-testid="list-filters"' not in body
    assert 'data-testid="backup-pages"' not in client.get("/t/acme/backups/").content.decode()
