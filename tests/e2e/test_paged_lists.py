"""Paged volume and backup lists in the browser: bob moves through the pages with the
pager, picks rows per page and searches (the URL keeps all of it); live updates patch the
rows on the page shown, and a new backup gets a row on the first page only."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from compute.choices import BackupPhase, VolumePhase
from compute.models import Backup, Volume
from compute.services import backups as backup_services
from compute.services import volumes as volume_services
from tests.compute.test_paged_lists import seed_backups, seed_volumes
from tests.conftest import ARTIFACTS, live_subscribed, login

pytestmark = pytest.mark.e2e


def names(page, kind: str) -> list[str]:
    return page.locator(f'tbody tr[data-live-kind="{kind}"]').evaluate_all(
        "rows => rows.map(r => r.dataset.liveName)"
    )


def query(page) -> dict:
    return parse_qs(urlparse(page.url).query)


def test_bob_pages_through_sixty_volumes_picks_rows_per_page_and_searches(
    demo, live_url, new_page, axe
):
    seed_volumes(demo.acme, 60)
    seed_volumes(demo.globex, 3, prefix="theirs")
    page = new_page()
    login(page, live_url, "bob")
    page.goto(f"{live_url}/t/acme/volumes/")
    rows = page.locator('tbody tr[data-live-kind="volume"]')
    footer = page.get_by_test_id("volume-pages")
    expect(rows).to_have_count(50)
    expect(footer).to_contain_text("1–50 of 60")
    expect(page.get_by_test_id("volume-counts")).to_contain_text("60 total")
    choices = page.get_by_role("group", name="Rows per page")
    expect(choices.locator('[aria-current="true"]')).to_have_text("50")

    # Page 2 with the pager: the last ten, by name.
    footer.get_by_role("link", name="2", exact=True).click()
    expect(footer).to_contain_text("51–60 of 60")
    assert query(page) == {"page": ["2"]}
    assert names(page, "volume") == [f"vol-{n:03d}" for n in range(50, 60)]
    expect(footer.locator('[aria-current="page"]')).to_have_text("2")

    # Live: a volume on this page changes in place; one on another page adds no row.
    live_subscribed(page)
    for name, phase in (("vol-055", VolumePhase.FAILED), ("vol-001", VolumePhase.FAILED)):
        Volume.objects.filter(tenant=demo.acme, name=name).update(
            phase=phase, message="disk image missing"
        )
        volume_services._publish(Volume.objects.get(tenant=demo.acme, name=name))
    row = page.locator('tr[data-volume="vol-055"]')
    expect(row.get_by_test_id("phase")).to_have_text("Failed")
    expect(row.locator('[data-live-field="message"]')).to_have_text("disk image missing")
    expect(rows).to_have_count(10)
    expect(footer).to_contain_text("51–60 of 60")

    # 25 per page starts at page 1; Next moves on and keeps the choice.
    choices.get_by_role("link", name="25").click()
    expect(rows).to_have_count(25)
    expect(footer).to_contain_text("1–25 of 60")
    footer.get_by_role("link", name="Next").click()
    expect(footer).to_contain_text("26–50 of 60")
    assert query(page) == {"per_page": ["25"], "page": ["2"]}
    assert names(page, "volume")[0] == "vol-025"
    axe(page, "volume-list-paged")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "volume-list-paged.png"), full_page=True)

    # A search narrows to its matches (ten: no pager), keeping rows per page.
    page.get_by_label("Search").fill("vol-01")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(10)
    expect(footer).to_have_count(0)
    assert query(page) == {"q": ["vol-01"], "per_page": ["25"]}
    assert "theirs-000" not in page.content()
    page.get_by_label("Search").fill("no-such-volume")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("volume-no-match")).to_contain_text("No volume matches")
    page.get_by_role("link", name="Show all volumes").click()
    expect(rows).to_have_count(50)


def test_a_new_backup_gets_a_live_row_on_the_first_page_and_not_on_the_second(
    demo, live_url, new_page, axe
):
    """And the pager's count follows: the first page's total grows with its live row and
    drops with a live delete, as does the second page's when one of its rows goes."""
    seed_backups(demo.acme, 30)
    first, second = new_page(), new_page()
    for page, query_string in ((first, "per_page=25"), (second, "per_page=25&page=2")):
        login(page, live_url, "alice")
        page.goto(f"{live_url}/t/acme/backups/?{query_string}")
        live_subscribed(page)
    expect(second.locator("tbody tr[data-backup-row]")).to_have_count(5)

    backup = Backup.objects.create(
        tenant=demo.acme, name="fresh", vm_name="web1", snapshot_name="s1"
    )
    assert backup.phase == BackupPhase.PENDING
    backup_services._publish(backup)
    # The newest backup is the first page's first row, live.
    expect(first.locator("tbody tr[data-backup-row]").first).to_have_attribute(
        "data-backup-row", "fresh"
    )
    # Its pager counts it: one more in all, and the range ends at the 26th row shown.
    first_pager = first.get_by_test_id("backup-pages")
    expect(first_pager).to_contain_text("1–26 of 31")
    expect(first.locator("tbody tr[data-backup-row]")).to_have_count(26)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    first.screenshot(path=str(ARTIFACTS / "backup-list-live-total.png"), full_page=True)
    # The second page does not show it (it is not on that page), and keeps its pager.
    second.wait_for_timeout(500)
    expect(second.locator("tbody tr[data-backup-row]")).to_have_count(5)
    expect(second.get_by_test_id("backup-pages")).to_contain_text("26–30 of 30")
    expect(second.locator("[data-backups-empty]")).to_be_hidden()
    # A reload shows it where it belongs: first of page 1, and pushes one to page 2.
    second.reload()
    second_pager = second.get_by_test_id("backup-pages")
    expect(second_pager).to_contain_text("26–31 of 31")
    axe(second, "backup-list-page-2")
    live_subscribed(second)

    # Live deletes: the new backup goes from page 1, the oldest from page 2; each page
    # loses its row and one from its total.
    backup_services.backup_finalize_delete(backup)
    expect(first.locator('tr[data-backup-row="fresh"]')).to_have_count(0)
    expect(first_pager).to_contain_text("1–25 of 30")
    backup_services.backup_finalize_delete(Backup.objects.get(tenant=demo.acme, name="bak-000"))
    expect(second.locator('tr[data-backup-row="bak-000"]')).to_have_count(0)
    expect(second_pager).to_contain_text("26–30 of 30")
