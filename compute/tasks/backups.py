"""The task that exports a backup or removes its files (queue ``libvirt``).

``backup_apply`` streams each disk snapshot of a Pending (or, after a lost worker,
Exporting) backup into the backup directory, writing progress as it goes, checks every
file (sha256, a standalone image) and marks it Ready; or removes a Deleting backup's
files and its row. Safe to run twice: an export starts again from nothing (partial
files are removed first), a deletion of what is gone is done. Transient backend errors
retry with backoff; other failures mark the backup Failed with its files removed.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task

from compute import imagefiles
from compute.backends import BackendError, TransientBackendError, backend_for_host
from compute.choices import BackupPhase
from compute.models import Backup
from compute.services import backups as services
from compute.tasks.locks import Busy, task_lock
from compute.tasks.volumes import MAX_RETRIES
from compute.texts import backups as backup_texts
from compute.texts import snapshots as snapshot_texts

logger = logging.getLogger(__name__)
# Progress is written at most this often (and whenever the percentage reaches 100).
PROGRESS_SECONDS = 0.5
LOCK_SECONDS = 6 * 3600


def backup_lock_key(backup_id: int) -> str:
    return f"isotope:backup-lock:{backup_id}"


def _load(backup_id: int) -> Backup | None:
    return Backup.objects.select_related("tenant").filter(pk=backup_id).first()


@shared_task(bind=True, acks_late=True, name="compute.tasks.libvirt.backup_apply")
def backup_apply(self, backup_id: int) -> None:
    """Converge one backup: export it, or delete it."""
    backup = _load(backup_id)
    if backup is None:
        return
    try:
        with task_lock(backup_lock_key(backup_id), LOCK_SECONDS):
            backup = _load(backup_id)
            if backup is None:
                return
            if backup.phase == BackupPhase.DELETING:
                services.backup_files_remove(backup)
                services.backup_finalize_delete(backup)
            elif backup.phase in (BackupPhase.PENDING, BackupPhase.EXPORTING):
                _export(backup)
    except Busy:
        raise self.retry(countdown=2, max_retries=120) from None
    except TransientBackendError as error:
        if self.request.retries < MAX_RETRIES:
            raise self.retry(countdown=min(2 ** (self.request.retries + 1), 60)) from error
        _fail(
            backup_id, snapshot_texts.NO_ANSWER % {"retries": self.request.retries, "error": error}
        )
    except (BackendError, imagefiles.ImageRefused, OSError) as error:
        _fail(backup_id, str(error) or error.__class__.__name__)


def _fail(backup_id: int, message: str) -> None:
    backup = _load(backup_id)
    if backup is not None:
        services.backup_files_remove(backup)
        services.backup_failed(backup, backup_texts.EXPORT_FAILED % {"error": message})


def _export(backup: Backup) -> None:
    services.backup_files_remove(backup)  # what an earlier, lost attempt wrote
    backup = services.backup_exporting(backup)
    if backup is None:
        return
    # Each disk's snapshot, by its volume's name (a lone volume's backup has no device).
    snapshots = {
        s.volume.name: s for s in backup.snapshots.select_related("volume", "host").order_by("pk")
    }
    total = sum(int(d["sizeGiB"]) for d in backup.disks) or 1
    folder = services.backup_dir(backup)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[dict] = []
    done_gib = 0.0
    last = {"at": 0.0, "percent": -1}
    current = {"backup": backup}

    def report(fraction_gib: float) -> None:
        percent = min(99, int((done_gib + fraction_gib) * 100 / total))
        now = time.monotonic()
        if percent != last["percent"] and now - last["at"] >= PROGRESS_SECONDS:
            last.update(at=now, percent=percent)
            current["backup"] = services.backup_progress(current["backup"], percent)

    for disk in backup.disks:
        snapshot = snapshots.get(disk["volume"])
        if snapshot is None:
            raise BackendError(backup_texts.SNAPSHOT_GONE % {"volume": disk["volume"]})
        size = int(disk["sizeGiB"])
        path = services.disk_path(backup, disk)
        written_bytes = backend_for_host(snapshot.host).volume_export(
            snapshot.pool,
            snapshot.backend_name,
            path,
            lambda done, whole, size=size: report(size * done / whole if whole else 0),
        )
        digest = imagefiles.sha256_file(path, lambda done, whole: None)
        services.check_standalone(path, disk.get("format") or "qcow2")
        written.append({**disk, "bytes": written_bytes, "sha256": digest})
        done_gib += size
        report(0)
    services.backup_ready(current["backup"], written)
