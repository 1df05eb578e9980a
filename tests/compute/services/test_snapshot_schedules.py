"""Scheduled snapshots on libvirt's test driver with a real Celery worker: the beat
task is called directly with the time it runs at. A run takes one snapshot through the
usual services, retention deletes the schedule's oldest beyond ``keep`` (never one taken
by hand), a failed run is one Warning event and waits for the next period, a beat that
was down catches up with one snapshot, not a pile."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from compute.choices import Phase, SnapshotPhase
from compute.models import Snapshot, SnapshotSchedule, VirtualMachine
from compute.services import snapshot_schedules as schedules
from compute.services import snapshots as snapshot_services
from compute.services import vms as vm_services
from compute.tasks.snapshots import snapshot_schedules_run
from monitoring.choices import NotificationKind
from monitoring.models import Event, Notification
from portal.exceptions import PermissionDenied, ValidationError
from tenants.models import AuditLog
from tests.compute.services.test_snapshots import ready_volume, wait_snapshot
from tests.compute.services.test_vm_lifecycle import wait_phase
from tests.compute.services.test_volumes import used_storage
from tests.compute.test_api_volumes import make_volume
from tests.conftest import wait_for

pytestmark = pytest.mark.libvirt_test_driver

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def run(at: datetime) -> dict:
    """The beat task, as beat calls it, at ``at``."""
    return snapshot_schedules_run(now=at.isoformat())


def settle() -> None:
    """Wait until the worker has taken or deleted every snapshot in flight."""
    wait_for(
        lambda: (
            not Snapshot.objects.filter(
                phase__in=[SnapshotPhase.PENDING, SnapshotPhase.DELETING]
            ).exists()
        ),
        20,
        message="snapshots still in flight",
    )


def test_a_volume_schedule_takes_snapshots_and_keeps_only_the_newest(
    demo, make_host, celery_worker
):
    make_host()
    volume = ready_volume(demo)
    by_hand = snapshot_services.snapshot_create(actor=demo.bob, volume=volume, name="by-hand")
    wait_snapshot(by_hand, SnapshotPhase.READY)
    schedule = schedules.snapshot_schedule_set(
        actor=demo.bob, volume=volume, interval_hours=6, keep=2, now=T0
    )
    assert schedule.next_run == T0 + timedelta(hours=6)
    assert AuditLog.objects.filter(action="snapshot.schedule", target="volume/data1").exists()
    assert Event.objects.filter(name="data1", reason="SnapshotScheduleSet").exists()

    assert run(T0 + timedelta(hours=1)) == {"Succeeded": [], "Failed": []}  # not due
    assert not Snapshot.objects.filter(schedule=schedule).exists()
    for period in range(1, 5):
        at = T0 + timedelta(hours=6 * period, seconds=20)
        assert run(at) == {"Succeeded": [schedule.pk], "Failed": []}
        settle()
    schedule.refresh_from_db()
    assert schedule.last_result == "Succeeded" and schedule.last_run == at
    assert schedule.next_run == at + timedelta(hours=6)
    # Four taken, the two oldest deleted (copies and quota): the newest two and the one
    # taken by hand remain.
    assert sorted(Snapshot.objects.values_list("name", flat=True)) == [
        "auto-20261202-0400",
        "auto-20261202-1000",
        "by-hand",
    ]
    assert used_storage(demo.acme) == 5 + 3 * 5
    assert (
        AuditLog.objects.filter(action="snapshot.delete", actor_name="snapshot-schedule").count()
        == 2
    )

    # Removing the schedule keeps what it took, and nothing is pruned any more.
    schedules.snapshot_schedule_delete(actor=demo.bob, schedule=schedule)
    assert Snapshot.objects.count() == 3 and not Snapshot.objects.exclude(schedule=None).exists()


def test_a_vm_schedule_fails_while_the_vm_is_unsettled_once_per_period_then_runs_live(
    demo, make_host, tiny_image, celery_worker
):
    make_host()
    vm = vm_services.vm_create(
        actor=demo.bob,
        tenant=demo.acme,
        name="web1",
        image="tiny",
        vcpus=1,
        memory_mib=256,
        disk_gib=1,
    )
    vm = wait_phase(vm, Phase.RUNNING)
    schedule = schedules.snapshot_schedule_set(
        actor=demo.bob, vm=vm, daily_at="02:30", keep=3, now=T0
    )
    assert schedule.next_run == datetime(2026, 12, 2, 2, 30, tzinfo=UTC)
    first = datetime(2026, 12, 2, 2, 30, 40, tzinfo=UTC)
    # Caught mid-migration (as the row says; its domain still runs here).
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.MIGRATING)
    assert run(first) == {"Succeeded": [], "Failed": [schedule.pk]}
    schedule.refresh_from_db()
    assert schedule.last_result == "Failed"
    assert "Running, Paused or Stopped" in schedule.last_message
    assert schedule.next_run == datetime(2026, 12, 3, 2, 30, tzinfo=UTC)
    warning = Event.objects.get(kind="vm", name="web1", reason="SnapshotFailed")
    assert warning.type == "Warning" and "Next try at 2026-12-03 02:30 UTC" in warning.message
    assert Notification.objects.filter(kind=NotificationKind.SNAPSHOT_FAILED).exists()
    # Beat keeps running all day: nothing more happens until the next period.
    for minutes in (1, 60, 23 * 60):
        assert run(first + timedelta(minutes=minutes)) == {"Succeeded": [], "Failed": []}
    assert Event.objects.filter(reason="SnapshotFailed").count() == 1
    assert not Snapshot.objects.exists() and used_storage(demo.acme) == 1

    # Running again: the next run snapshots it live, without stopping it.
    VirtualMachine.objects.filter(pk=vm.pk).update(phase=Phase.RUNNING)
    second = datetime(2026, 12, 3, 2, 30, 5, tzinfo=UTC)
    assert run(second) == {"Succeeded": [schedule.pk], "Failed": []}
    settle()
    (taken,) = snapshot_services.vm_snapshots(VirtualMachine.objects.get(pk=vm.pk))
    assert taken.name == "auto-20261203-0230" and taken.phase == SnapshotPhase.READY
    assert taken.live and [d.volume.name for d in taken.disks] == ["web1-root"]
    assert VirtualMachine.objects.get(pk=vm.pk).phase == Phase.RUNNING


def test_a_beat_that_was_down_takes_one_snapshot_not_one_per_missed_period(
    demo, make_host, celery_worker
):
    make_host()
    volume = ready_volume(demo)
    schedule = schedules.snapshot_schedule_set(
        actor=demo.bob, volume=volume, interval_hours=1, keep=5, now=T0
    )
    late = T0 + timedelta(days=3)
    assert run(late) == {"Succeeded": [schedule.pk], "Failed": []}
    assert run(late) == {"Succeeded": [], "Failed": []}
    settle()
    assert Snapshot.objects.count() == 1
    schedule.refresh_from_db()
    assert schedule.next_run == late + timedelta(hours=1)


def test_a_paused_schedule_does_not_run_and_a_daily_time_later_today_is_today(demo, make_host):
    make_host()
    volume = make_volume(demo)
    schedule = schedules.snapshot_schedule_set(
        actor=demo.bob, volume=volume, daily_at=time(23, 15), keep=1, enabled=False, now=T0
    )
    assert schedule.next_run == datetime(2026, 12, 1, 23, 15, tzinfo=UTC)
    assert run(T0 + timedelta(days=2)) == {"Succeeded": [], "Failed": []}
    assert not Snapshot.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"keep": 3}, "interval_hours"),
        ({"interval_hours": 2, "daily_at": "01:00", "keep": 3}, "interval_hours"),
        ({"interval_hours": 0, "keep": 3}, "interval_hours"),
        ({"interval_hours": 24 * 7 + 1, "keep": 3}, "interval_hours"),
        ({"daily_at": "25:00", "keep": 3}, "daily_at"),
        ({"daily_at": "noon", "keep": 3}, "daily_at"),
        ({"interval_hours": 2, "keep": 0}, "keep"),
        ({"interval_hours": 2, "keep": 51}, "keep"),
    ],
)
def test_bad_schedules_are_field_errors_and_change_nothing(demo, make_host, fields, field):
    make_host()
    volume = make_volume(demo)
    with pytest.raises(ValidationError) as refused:
        schedules.snapshot_schedule_set(actor=demo.bob, volume=volume, now=T0, **fields)
    assert field in refused.value.errors
    assert not SnapshotSchedule.objects.exists()


def test_a_viewer_cannot_schedule_and_the_refusal_is_audited(demo, make_host):
    make_host()
    volume = make_volume(demo)
    with pytest.raises(PermissionDenied):
        schedules.snapshot_schedule_set(actor=demo.carol, volume=volume, interval_hours=1, keep=1)
    assert not SnapshotSchedule.objects.exists()
    assert AuditLog.objects.filter(
        actor=demo.carol, action="snapshot.schedule", outcome="denied"
    ).exists()
