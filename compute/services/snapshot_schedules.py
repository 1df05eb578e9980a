"""Scheduled snapshots: set, remove, and the beat run that takes them and enforces
retention.

A schedule belongs to one volume (its snapshot) or one VM (a snapshot of all its disks
together, so the VM must be stopped when it runs, as for a VM snapshot taken by hand).
It runs every ``interval_hours`` or daily at ``daily_at`` (UTC). Each run:

- takes one snapshot named ``auto-<YYYYMMDD>-<HHMM>`` through the same services as a
  snapshot taken by hand (quota, checks, audit, task), recorded as the schedule's;
- on a refusal (VM running, quota, a busy volume…) records a Warning event
  ``SnapshotFailed`` on the volume's or VM's timeline (members are notified) and waits
  for the next period: a failed run is not retried sooner;
- deletes the oldest of the schedule's own snapshots beyond ``keep`` (Ready or Failed
  ones; snapshots taken by hand, or by a schedule since removed, are never touched).

The next run is computed from the time of this run, never from the one missed: a beat
that was down for a day takes one snapshot when it comes back, not twenty-four, and
runs never pile up.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from compute.choices import SnapshotPhase
from compute.models import Snapshot, SnapshotSchedule, VirtualMachine, Volume
from compute.services import snapshots as snapshot_services
from compute.texts import snapshots as snapshot_texts
from monitoring.services import event_publish
from portal.exceptions import ApplicationError, NotFound, ValidationError
from tenants.services import actor_name, audit_record, authorize

logger = logging.getLogger(__name__)

MAX_INTERVAL_HOURS = 24 * 7
MAX_KEEP = 50
SUCCEEDED, FAILED = "Succeeded", "Failed"


class Scheduler:
    """The actor of a scheduled run: the system (no role check), named in audit
    entries and events as ``snapshot-schedule``."""

    is_system = True
    is_authenticated = False

    def __str__(self) -> str:
        return "snapshot-schedule"


SCHEDULER = Scheduler()


def _subject(*, volume: Volume | None, vm: VirtualMachine | None) -> tuple[str, str]:
    """(event kind, name) of what a schedule snapshots."""
    return ("volume", volume.name) if volume is not None else ("vm", vm.name)


def next_run_after(schedule: SnapshotSchedule, now: datetime) -> datetime:
    """The first time after ``now`` that ``schedule`` runs."""
    if schedule.interval_hours:
        return now + timedelta(hours=schedule.interval_hours)
    today = datetime.combine(now.date(), schedule.daily_at, tzinfo=now.tzinfo)
    return today if today > now else today + timedelta(days=1)


def _parse_daily(value, errors: dict) -> time | None:
    if value in (None, ""):
        return None
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0)
    try:
        hours, minutes = str(value).strip().split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        errors["daily_at"] = ["A time of day, HH:MM (UTC)."]
        return None


def _check(interval_hours, daily_at, keep) -> tuple[int | None, time | None, int]:
    errors: dict[str, list[str]] = {}
    daily = _parse_daily(daily_at, errors)
    interval = None
    if interval_hours not in (None, ""):
        try:
            interval = int(interval_hours)
        except (TypeError, ValueError):
            interval = -1
        if not 1 <= interval <= MAX_INTERVAL_HOURS:
            errors["interval_hours"] = [f"A whole number of hours, 1 to {MAX_INTERVAL_HOURS}."]
    if "daily_at" not in errors and "interval_hours" not in errors:
        if (interval is None) == (daily is None):
            errors["interval_hours"] = ["Give either an interval in hours or a daily time."]
    try:
        keep = int(keep)
    except (TypeError, ValueError):
        keep = 0
    if not 1 <= keep <= MAX_KEEP:
        errors["keep"] = [f"Keep 1 to {MAX_KEEP} snapshots."]
    if errors:
        raise ValidationError(gettext("The snapshot schedule is not valid."), errors=errors)
    return interval, daily, keep


# The event of a schedule set, by (every N hours, paused).
SET_TEXTS = {
    (True, False): snapshot_texts.SCHEDULE_SET_EVERY,
    (True, True): snapshot_texts.SCHEDULE_SET_EVERY_PAUSED,
    (False, False): snapshot_texts.SCHEDULE_SET_DAILY,
    (False, True): snapshot_texts.SCHEDULE_SET_DAILY_PAUSED,
}


def _set_message(schedule: SnapshotSchedule, actor) -> str:
    """The event of ``schedule`` set by ``actor``: when it runs, what it keeps, when
    next."""
    fmt = SET_TEXTS[(bool(schedule.interval_hours), not schedule.enabled)]
    return fmt % {
        "hours": schedule.interval_hours,
        "time": f"{schedule.daily_at:%H:%M}" if schedule.daily_at else "",
        "keep": schedule.keep,
        "actor": actor_name(actor),
        "next_run": f"{schedule.next_run:%Y-%m-%d %H:%M}",
    }


# --- Set and remove --------------------------------------------------------------------
def snapshot_schedule_set(
    *,
    actor,
    volume: Volume | None = None,
    vm: VirtualMachine | None = None,
    interval_hours=None,
    daily_at=None,
    keep,
    enabled: bool = True,
    now: datetime | None = None,
) -> SnapshotSchedule:
    """Create or replace the schedule of ``volume`` (a local one) or of ``vm``; the
    first run is one period from now (or the next ``daily_at``). Audited, and an event
    on the volume's or VM's timeline."""
    owner = volume if volume is not None else vm
    if (volume is None) == (vm is None):
        raise ValueError("a schedule is of a volume or of a VM")
    kind, name = _subject(volume=volume, vm=vm)
    authorize(
        actor=actor, tenant=owner.tenant, permission="snapshot.schedule", target=f"{kind}/{name}"
    )
    interval, daily, keep = _check(interval_hours, daily_at, keep)
    if volume is not None and not volume.local:
        raise ValidationError(
            gettext("%(volume)s is a Kubernetes volume: only local volumes have snapshots.")
            % {"volume": volume.name},
            errors={"volume": [gettext("Not a local volume.")]},
        )
    now = now or timezone.now()
    with transaction.atomic():
        owner = type(owner).objects.select_for_update(of=("self",)).get(pk=owner.pk)
        schedule = (
            SnapshotSchedule.objects.select_for_update(of=("self",)).filter(**{kind: owner}).first()
        )
        fields = {
            "interval_hours": interval,
            "daily_at": daily,
            "keep": keep,
            "enabled": bool(enabled),
        }
        probe = SnapshotSchedule(**fields)
        fields["next_run"] = next_run_after(probe, now)
        if schedule is None:
            schedule = SnapshotSchedule.objects.create(
                tenant=owner.tenant,
                volume=owner if kind == "volume" else None,
                vm=owner if kind == "vm" else None,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
                **fields,
            )
        else:
            schedule = _save(schedule, **fields)
        audit_record(
            actor=actor,
            action="snapshot.schedule",
            tenant=owner.tenant,
            target=f"{kind}/{name}",
            detail={
                "interval_hours": interval,
                "daily_at": daily.strftime("%H:%M") if daily else None,
                "keep": keep,
                "enabled": schedule.enabled,
            },
        )
        event_publish(
            tenant=owner.tenant,
            kind=kind,
            name=name,
            uid=str(owner.uid),
            reason="SnapshotScheduleSet",
            message=_set_message(schedule, actor),
        )
    return schedule


def snapshot_schedule_delete(*, actor, schedule: SnapshotSchedule) -> None:
    """Remove a schedule; the snapshots it took stay (and are no longer pruned)."""
    kind, name = _subject(volume=schedule.volume, vm=schedule.vm)
    authorize(
        actor=actor,
        tenant=schedule.tenant,
        permission="snapshot.schedule",
        target=f"{kind}/{name}",
    )
    owner = schedule.volume or schedule.vm
    with transaction.atomic():
        deleted, _ = SnapshotSchedule.objects.filter(pk=schedule.pk).delete()
        if not deleted:
            raise NotFound(gettext("%(name)s has no snapshot schedule.") % {"name": name})
        audit_record(
            actor=actor,
            action="snapshot.schedule",
            tenant=schedule.tenant,
            target=f"{kind}/{name}",
            detail={"removed": True},
        )
        event_publish(
            tenant=schedule.tenant,
            kind=kind,
            name=name,
            uid=str(owner.uid),
            reason="SnapshotScheduleRemoved",
            message=snapshot_texts.SCHEDULE_REMOVED % {"actor": actor_name(actor)},
        )


def _save(schedule: SnapshotSchedule, **fields) -> SnapshotSchedule:
    SnapshotSchedule.objects.filter(pk=schedule.pk).update(
        **fields, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    schedule.refresh_from_db()
    return schedule


# --- The beat run ----------------------------------------------------------------------
def snapshot_schedules_run(now: datetime | None = None) -> dict[str, list[int]]:
    """Run every enabled schedule due at ``now`` once (each in its own transaction,
    skipping one another worker holds). Returns the ids that succeeded and failed."""
    now = now or timezone.now()
    done: dict[str, list[int]] = {SUCCEEDED: [], FAILED: []}
    due = SnapshotSchedule.objects.filter(enabled=True, next_run__lte=now).values_list(
        "pk", flat=True
    )
    for pk in list(due):
        result = _run_one(pk, now)
        if result:
            done[result].append(pk)
    return done


def _run_one(pk: int, now: datetime) -> str | None:
    with transaction.atomic():
        schedule = (
            SnapshotSchedule.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("tenant", "volume", "volume__tenant", "vm", "vm__tenant")
            .filter(pk=pk, enabled=True, next_run__lte=now)
            .first()
        )
        if schedule is None:
            return None  # another worker has it, or it changed since
        name = f"auto-{now:%Y%m%d-%H%M}"
        try:
            # Its own savepoint: a refusal rolls back what the take did, not the record.
            with transaction.atomic():
                _take(schedule, name)
        except ApplicationError as error:
            result, message = FAILED, error.message
        else:
            result, message = SUCCEEDED, snapshot_texts.SCHEDULE_TOOK % {"snapshot": name}
        schedule = _save(
            schedule,
            last_run=now,
            last_result=result,
            last_message=message[:1000],
            next_run=next_run_after(schedule, now),
        )
        if result == FAILED:
            _failed(schedule, name, message)
        else:
            _prune(schedule)
    return result


def _take(schedule: SnapshotSchedule, name: str) -> None:
    if schedule.volume_id:
        snapshot_services.snapshot_create(
            actor=SCHEDULER, volume=schedule.volume, name=name, schedule=schedule
        )
    else:
        snapshot_services.vm_snapshot_create(
            actor=SCHEDULER, vm=schedule.vm, name=name, schedule=schedule
        )


def _failed(schedule: SnapshotSchedule, name: str, message: str) -> None:
    """A Warning event (``SnapshotFailed``: members are notified); no retry before
    the next period."""
    kind, subject = _subject(volume=schedule.volume, vm=schedule.vm)
    owner = schedule.volume or schedule.vm
    logger.info("scheduled snapshot %s of %s/%s failed: %s", name, kind, subject, message)
    event_publish(
        tenant=schedule.tenant,
        kind=kind,
        name=subject,
        uid=str(owner.uid),
        type="Warning",
        reason="SnapshotFailed",
        message=snapshot_texts.SCHEDULE_FAILED
        % {
            "snapshot": name,
            "subject": subject,
            "error": message,
            "next_run": f"{schedule.next_run:%Y-%m-%d %H:%M}",
        },
    )


def _prune(schedule: SnapshotSchedule) -> None:
    """Delete the schedule's own snapshots beyond the newest ``keep`` (by name: a VM's
    counts once for all its disks). Ones still being taken or restored wait for the
    next run."""
    rows = (
        Snapshot.objects.filter(schedule=schedule)
        .exclude(phase=SnapshotPhase.DELETING)
        .order_by("-created")
        .values_list("name", "created")
    )
    names: list[str] = []
    for name, _ in rows:
        if name not in names:
            names.append(name)
    for name in names[schedule.keep :]:
        disks = list(
            Snapshot.objects.select_for_update(of=("self",))
            .select_related("tenant", "volume", "volume__tenant")
            .filter(schedule=schedule, name=name)
            .order_by("pk")
        )
        if any(d.phase not in (SnapshotPhase.READY, SnapshotPhase.FAILED) for d in disks):
            continue
        for disk in disks:
            snapshot_services._delete(SCHEDULER, disk)


# --- Reads -----------------------------------------------------------------------------
def schedule_state(schedule: SnapshotSchedule | None) -> dict | None:
    """The schedule as the API and pages show it."""
    if schedule is None:
        return None
    return {
        "intervalHours": schedule.interval_hours,
        "dailyAt": schedule.daily_at.strftime("%H:%M") if schedule.daily_at else None,
        "keep": schedule.keep,
        "enabled": schedule.enabled,
        "nextRun": schedule.next_run.isoformat().replace("+00:00", "Z"),
        "lastRun": schedule.last_run.isoformat().replace("+00:00", "Z")
        if schedule.last_run
        else None,
        "lastResult": schedule.last_result or None,
        "lastMessage": schedule.last_message,
    }
