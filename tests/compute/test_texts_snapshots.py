"""The messages snapshots, schedules, backups and clones store read back to the format
that made them, variant by variant, and a Chinese reader sees them in Chinese: a
scheduled run's refusal with the phase, what is done to the disks and the phases it
needs in the reader's words (portal.texts)."""

from __future__ import annotations

import pytest
from django.utils import translation
from django.utils.translation import gettext, pgettext

from compute.services.clones import CLONE_TEXTS
from compute.services.snapshot_schedules import SET_TEXTS
from compute.texts import backups as backup_texts
from compute.texts import clones as clone_texts
from compute.texts import snapshots as snapshot_texts
from portal import texts

pytestmark = pytest.mark.unit

CLONE = {
    "clone": "web2",
    "source": "web",
    "snapshot": "nightly",
    "disks": "web-root → web2-root, web-vdb → web2-vdb",
    "vcpus": 2,
    "memory_mib": 1024,
    "disk_gib": 20,
    "actor": "alice",
}
SCHEDULE = {
    "hours": 6,
    "time": "02:30",
    "keep": 3,
    "actor": "alice",
    "next_run": "2026-12-03 02:30",
}


@pytest.mark.parametrize(
    "fmt",
    [*CLONE_TEXTS.values(), clone_texts.REQUESTED_NO_DISKS, clone_texts.ACCEPTED_NO_DISKS],
)
def test_each_variant_of_a_clone_event_reads_back_to_its_own_format(fmt):
    assert texts.parse(fmt % CLONE)[0] == fmt


@pytest.mark.parametrize("fmt", list(SET_TEXTS.values()))
def test_each_variant_of_a_schedule_event_reads_back_to_its_own_format(fmt):
    assert texts.parse(fmt % SCHEDULE) == (
        fmt,
        {k: str(v) for k, v in SCHEDULE.items() if f"%({k})s" in fmt},
    )


def test_a_refused_restore_names_the_volume_and_the_missing_copy():
    message = snapshot_texts.RESTORE_REFUSED % {
        "snapshot": "s1",
        "file": "snap-1.qcow2",
        "volume": "data",
    }
    assert texts.parse(message) == (
        snapshot_texts.RESTORE_REFUSED,
        {"snapshot": "s1", "file": "snap-1.qcow2", "volume": "data"},
    )


def test_a_scheduled_run_refused_by_a_running_vm_is_shown_in_the_readers_words():
    refusal = snapshot_texts.VM_NOT_STOPPED % {
        "vm": "web",
        "phase": "Running",
        "what": "snapshotted",
    }
    message = snapshot_texts.SCHEDULE_FAILED % {
        "snapshot": "auto-20261202-0230",
        "subject": "web",
        "error": refusal,
        "next_run": "2026-12-03 02:30",
    }
    with translation.override("zh-hans"):
        shown = texts.localize(message)
        running = gettext("Running")
        snapshotted = pgettext("done to disks", "snapshotted")
    for english in ("Scheduled snapshot", "stop it first", "Running", "snapshotted"):
        assert english not in shown
    assert running in shown and snapshotted in shown
    assert "auto-20261202-0230" in shown and "2026-12-03 02:30" in shown


def test_the_phases_a_volume_must_be_in_are_shown_in_the_readers_words():
    message = snapshot_texts.VOLUME_NOT_QUIET % {
        "volume": "data",
        "phase": "Pending",
        "what": "snapshotted",
        "phases": "Ready or Attached",
    }
    with translation.override("zh-hans"):
        shown = texts.localize(message)
        ready, attached = gettext("Ready"), gettext("Attached")
    assert "Ready" not in shown and "Attached" not in shown
    assert ready in shown and attached in shown


def test_an_export_failure_shows_its_reason_in_the_readers_language():
    message = backup_texts.EXPORT_FAILED % {
        "error": snapshot_texts.NO_ANSWER % {"retries": 5, "error": "timed out"}
    }
    with translation.override("zh-hans"):
        shown = texts.localize(message)
    assert "Export failed" not in shown and "No answer" not in shown
    assert "5" in shown and "timed out" in shown  # the engine's words stay as written
    with translation.override("en"):
        assert texts.localize(message) == "Export failed: No answer after 5 retries: timed out"
