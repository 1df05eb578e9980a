"""Image services: tenants import disk images (upload or HTTP(S) URL), staff publish.

Lifecycle (CDI's DataVolume import, simplified)::

    upload:  Uploading ──(last byte)──► Pending ─► Importing ─► Converting ─► Ready
    url:                                Pending ─► Importing ─► Converting ─► Ready
                          any step that refuses the file ─► Failed (terminal)

- Accepting an import charges the tenant's ``storage`` quota (GiB, rounded up) in the
  transaction that creates the row: the declared size, or for a URL without one the
  size limit until the server says how big the file is. Once the stored qcow2 exists
  the charge is trued up to its size. ``Failed`` and deletion release it (once).
- The import runs in one Celery task (queue ``storage``) that holds a Redis lock it
  renews while it works. The task is idempotent: it starts the work over from the
  received file (or a fresh download) and removes what an earlier attempt left. A
  worker killed mid-import stops renewing its lock; :func:`images_sweep` starts the
  import again, at most ``ISOTOPE_IMAGE_MAX_ATTEMPTS`` times, then fails it.
- A refused file (not an image, wrong checksum, too large, a backing file, ...) ends
  ``Failed`` with the reason and nothing else: staging files removed, quota released.
- Every status write is a compare-and-set on the phase with ``resource_version + 1``;
  a write that finds the image changed (deleted meanwhile) stops the import.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F, ProtectedError, Q
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from compute import imagefiles
from compute.choices import IMAGE_IMPORT_PHASES, ImageKind, ImagePhase, ImageSource
from compute.imagefiles import ImageRefused, TransientFetchError
from compute.models import Image
from compute.texts import images as image_texts
from monitoring.services import event_publish, resource_forget, resource_publish
from portal.exceptions import Conflict, NotFound, QuotaExceeded, ValidationError
from portal.failpoints import failpoint
from portal.texts import localize
from tenants.choices import ReservationKind
from tenants.models import Tenant
from tenants.services import audit_record, authorize, quota_release, quota_reserve

logger = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Path segments next to image names in the web UI (/t/<t>/images/import/).
RESERVED_NAMES = frozenset({"new", "import", "upload"})
# How often progress is written and pushed to browsers while bytes flow.
PROGRESS_SECONDS = 0.5
LOCK_KEY = "isotope:image-lock:{pk}"


class ImportStopped(Exception):
    """The image changed under the import (deleted, failed elsewhere): stop quietly."""


# --- Reads used by the services and the API ------------------------------------------------
def image_state(image: Image) -> dict:
    """What live pages need to redraw an image (phase, message, progress)."""
    return {
        "phase": image.phase,
        "message": image.message,
        "public": image.public,
        "source": image.source,
        "uid": str(image.uid),
        "resourceVersion": str(image.resource_version),
        "progress": {
            "bytes": image.progress_bytes,
            "total": image.progress_total,
            "percent": progress_percent(image),
        },
        "sizeBytes": image.size_bytes,
        "virtualSizeBytes": image.virtual_size_bytes,
        "format": image.source_format,
    }


def progress_percent(image: Image) -> int | None:
    if image.phase == ImagePhase.READY:
        return 100
    if not image.progress_total:
        return None
    return min(100, int(image.progress_bytes * 100 / image.progress_total))


def _publish(image: Image, *, rate: int | None = None) -> None:
    if image.tenant_id is None:
        return
    state = image_state(image)
    if rate is not None:
        state["progress"]["rate"] = rate
    resource_publish(tenant=image.tenant, kind="image", name=image.name, data=state)


def _event(image: Image, reason: str, message: str, *, warning: bool = False) -> None:
    if image.tenant_id is None:
        return
    event_publish(
        tenant=image.tenant,
        kind="image",
        name=image.name,
        uid=str(image.uid),
        reason=reason,
        type="Warning" if warning else "Normal",
        message=message,
    )


# --- Accepting an import ------------------------------------------------------------------
def _validate(
    *, tenant: Tenant, name, sha256, size_bytes, display_name, size_required: bool
) -> tuple[str, str, int | None, str]:
    errors: dict[str, list[str]] = {}
    name = name if isinstance(name, str) else ""
    if not name:
        errors["name"] = ["A name is required."]
    elif len(name) > 63 or not NAME_RE.fullmatch(name):
        errors["name"] = [
            "Use at most 63 lowercase letters, digits and hyphens, starting and ending "
            "with a letter or digit."
        ]
    elif name in RESERVED_NAMES:
        errors["name"] = [f"{name!r} is reserved; choose another name."]
    elif Image.objects.filter(tenant=tenant, name=name).exclude(phase=ImagePhase.FAILED).exists():
        errors["name"] = [f"An image named {name!r} exists already in {tenant.slug}."]
    sha256 = (sha256 or "").strip().lower() if isinstance(sha256, str | type(None)) else None
    if sha256 is None or (sha256 and not SHA256_RE.fullmatch(sha256)):
        errors["sha256"] = ["64 hexadecimal characters (the output of sha256sum), or empty."]
        sha256 = ""
    limit = settings.ISOTOPE_IMAGE_MAX_BYTES
    size = None
    if size_bytes is None or size_bytes == "":
        if size_required:
            errors["size_bytes"] = ["The size of the file in bytes is required."]
    else:
        try:
            if isinstance(size_bytes, bool):
                raise ValueError
            size = int(str(size_bytes).strip())
        except (TypeError, ValueError):
            errors["size_bytes"] = ["Enter a whole number of bytes."]
        else:
            if size < 1:
                errors["size_bytes"] = ["The file cannot be empty."]
            elif size > limit:
                errors["size_bytes"] = [
                    f"{size:,} bytes is more than the {limit:,} bytes an image may have."
                ]
    display_name = display_name if isinstance(display_name, str) else ""
    display_name = display_name.strip()
    if len(display_name) > 100 or not display_name.isprintable():
        errors["display_name"] = ["At most 100 printable characters."]
    if errors:
        raise ValidationError(gettext("The image is not valid."), errors=errors)
    return name, sha256, size, display_name


def _accept(
    *,
    actor,
    tenant: Tenant,
    name: str,
    display_name: str,
    source: str,
    source_url: str,
    sha256: str,
    size: int | None,
) -> Image:
    """Create the row and charge the quota in one transaction; enqueue on commit."""
    uid = uuid.uuid4()
    charge = imagefiles.gib_for(size if size is not None else settings.ISOTOPE_IMAGE_MAX_BYTES)
    upload = source == ImageSource.UPLOAD
    try:
        with transaction.atomic():
            # A failed import's name can be used again: its row is replaced (its quota
            # was released when it failed, its files removed).
            Image.objects.filter(tenant=tenant, name=name, phase=ImagePhase.FAILED).delete()
            quota_reserve(
                tenant=tenant,
                ref=f"image:{uid}",
                storage=charge,
                kind=ReservationKind.IMAGE,
                object_id=str(uid),
            )
            image = Image.objects.create(
                uid=uid,
                tenant=tenant,
                name=name,
                display_name=display_name,
                kind=ImageKind.DISK,
                disk_format="qcow2",
                public=False,
                os_label="Imported disk image",
                phase=ImagePhase.UPLOADING if upload else ImagePhase.PENDING,
                message=image_texts.WAITING_FOR_UPLOAD
                if upload
                else image_texts.WAITING_FOR_WORKER,
                source=source,
                source_url=source_url,
                expected_sha256=sha256,
                declared_bytes=size,
                progress_total=size,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            audit_record(
                actor=actor,
                action="image.upload" if upload else "image.import",
                tenant=tenant,
                target=f"image/{name}",
                detail={
                    "source": source_url if not upload else "upload",
                    "size_bytes": size,
                    "sha256": sha256,
                    "storage_gib": charge,
                },
            )
            _event(
                image,
                "UploadStarted" if upload else "ImportAccepted",
                (
                    image_texts.UPLOAD_ACCEPTED % {"size": f"{size:,}", "storage": charge}
                    if upload
                    else image_texts.IMPORT_ACCEPTED
                    % {"host": _host_of(source_url), "storage": charge}
                ),
            )
            _publish(image)
            if not upload:
                transaction.on_commit(lambda: _enqueue(image.pk))
    except IntegrityError:
        raise ValidationError(
            gettext("An image with this name exists already."), errors={"name": [gettext("Taken.")]}
        ) from None
    except QuotaExceeded as error:
        if size is None:
            hint = (
                " Without a declared size the import reserves the size limit; give the "
                "file's size to reserve less."
            )
            error.message += hint
            error.stored_message += hint
        _event_refused(tenant, name, error.stored_message)
        raise
    return image


def _event_refused(tenant: Tenant, name: str, message: str) -> None:
    event_publish(
        tenant=tenant,
        kind="image",
        name=name,
        type="Warning",
        reason="QuotaExceeded",
        message=message,
    )


def _host_of(url: str) -> str:
    try:
        return imagefiles.check_url(url).hostname or url
    except ImageRefused:
        return url


def image_import_url(
    *,
    actor,
    tenant: Tenant,
    name: str,
    url: str,
    sha256: str = "",
    size_bytes: int | None = None,
    display_name: str = "",
) -> Image:
    """Accept an import from an http(s) URL (phase ``Pending``; a task fetches it).

    Refuses other schemes, URLs with credentials and hosts that resolve to internal
    addresses (unless ``ISOTOPE_IMAGE_URL_ALLOW`` lists them) as field errors on
    ``url``; a name that does not resolve yet is accepted and retried by the task.
    """
    authorize(actor=actor, tenant=tenant, permission="image.create", target=f"image/{name}")
    errors: dict[str, list[str]] = {}
    try:
        parts = imagefiles.check_url(url)
        imagefiles.url_addresses(parts)
    except TransientFetchError:
        pass
    except ImageRefused as refusal:
        errors["url"] = [localize(str(refusal))]
    try:
        name, sha256, size, display_name = _validate(
            tenant=tenant,
            name=name,
            sha256=sha256,
            size_bytes=size_bytes,
            display_name=display_name,
            size_required=False,
        )
    except ValidationError as error:
        error.errors.update(errors)
        raise
    if errors:
        raise ValidationError(gettext("The image is not valid."), errors=errors)
    return _accept(
        actor=actor,
        tenant=tenant,
        name=name,
        display_name=display_name,
        source=ImageSource.URL,
        source_url=url.strip(),
        sha256=sha256,
        size=size,
    )


def image_upload_begin(
    *,
    actor,
    tenant: Tenant,
    name: str,
    size_bytes: int,
    sha256: str = "",
    display_name: str = "",
) -> Image:
    """Accept an upload of ``size_bytes`` (phase ``Uploading``): the client then sends
    the bytes with the tus protocol to the image's upload URL (:func:`image_upload_append`)."""
    authorize(actor=actor, tenant=tenant, permission="image.create", target=f"image/{name}")
    name, sha256, size, display_name = _validate(
        tenant=tenant,
        name=name,
        sha256=sha256,
        size_bytes=size_bytes,
        display_name=display_name,
        size_required=True,
    )
    return _accept(
        actor=actor,
        tenant=tenant,
        name=name,
        display_name=display_name,
        source=ImageSource.UPLOAD,
        source_url="",
        sha256=sha256,
        size=size,
    )


# --- The upload (tus) -------------------------------------------------------------------
def upload_expires(image: Image):
    """When an idle upload is given up (tus ``Upload-Expires``)."""
    return image.updated + timedelta(hours=settings.ISOTOPE_IMAGE_UPLOAD_EXPIRE_HOURS)


def image_upload_append(*, actor, image: Image, offset: int, stream, length: int) -> Image:
    """Write ``length`` bytes read from ``stream`` at ``offset`` of the upload (a tus
    ``PATCH``). The image row stays locked while the bytes are written, so two requests
    for the same offset cannot both land: the second sees the new offset (``Conflict``).

    Bytes past the declared size are refused (``ValidationError`` on ``Upload-Offset``
    style fields) and nothing is written. The last byte moves the image to ``Pending``
    and starts the import.
    """
    authorize(
        actor=actor, tenant=image.tenant, permission="image.create", target=f"image/{image.name}"
    )
    with transaction.atomic():
        image = (
            Image.objects.select_for_update(of=("self",))
            .select_related("tenant")
            .filter(pk=image.pk)
            .first()
        )
        if image is None:
            raise NotFound(gettext("The upload was cancelled."))
        if image.phase != ImagePhase.UPLOADING:
            raise Conflict(
                gettext("The upload of %(image)s is complete (phase %(phase)s).")
                % {"image": image.name, "phase": image.phase},
                errors={"Upload-Offset": [gettext("The upload is not receiving bytes.")]},
            )
        if offset != image.upload_offset:
            raise Conflict(
                gettext(
                    "The upload is at byte %(upload_offset)s, not %(offset)s: ask (HEAD) and "
                    "continue from there."
                )
                % {"upload_offset": image.upload_offset, "offset": offset},
                errors={
                    "Upload-Offset": [
                        gettext("Expected %(upload_offset)s.")
                        % {"upload_offset": image.upload_offset}
                    ]
                },
            )
        declared = image.declared_bytes or 0
        if length < 0 or offset + length > declared:
            raise ValidationError(
                gettext(
                    "The upload was declared with %(declared)s bytes; %(size)s is more. "
                    "Nothing was written."
                )
                % {"declared": format(declared, ","), "size": format(offset + length, ",")},
                errors={
                    "Content-Length": [
                        gettext("At most %(size)s bytes remain.") % {"size": declared - offset}
                    ]
                },
            )
        paths = imagefiles.paths_for(image.tenant.slug, str(image.uid))
        imagefiles.ensure_dirs(paths)
        written = _write_at(paths.upload, offset, stream, length)
        if written != length:
            raise ValidationError(
                gettext(
                    "The request announced %(length)s bytes and carried %(written)s; nothing "
                    "was kept."
                )
                % {"length": length, "written": written},
                errors={"Content-Length": [gettext("Does not match the body.")]},
            )
        complete = offset + length == declared
        updates = {
            "upload_offset": offset + length,
            "progress_bytes": offset + length,
            "updated": timezone.now(),
            "resource_version": F("resource_version") + 1,
        }
        if not complete:
            updates["message"] = image_texts.RECEIVING_UPLOAD
        else:
            updates.update(
                phase=ImagePhase.PENDING,
                message=image_texts.UPLOADED,
                phase_changed=timezone.now(),
            )
        Image.objects.filter(pk=image.pk, upload_offset=offset).update(**updates)
        image.refresh_from_db()
        if complete:
            _event(image, "Uploaded", image_texts.ALL_BYTES_RECEIVED % {"size": f"{declared:,}"})
            transaction.on_commit(lambda: _enqueue(image.pk))
        _publish(image)
    return image


def _write_at(path: Path, offset: int, stream, length: int) -> int:
    """Write the request body at ``offset``; a short body is cut off again."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    written = 0
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        while written < length:
            block = stream.read(min(imagefiles.BLOCK, length - written))
            if not block:
                break
            os.write(fd, block)
            written += len(block)
        if written != length:
            os.ftruncate(fd, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


def image_upload_cancel(*, actor, image: Image) -> None:
    """Give up an upload that is still receiving bytes (tus termination): the row, the
    partial file and the quota charge go."""
    authorize(
        actor=actor, tenant=image.tenant, permission="image.create", target=f"image/{image.name}"
    )
    with transaction.atomic():
        locked = Image.objects.select_for_update(of=("self",)).filter(pk=image.pk).first()
        if locked is None:
            raise NotFound(gettext("No such upload."))
        if locked.phase != ImagePhase.UPLOADING:
            raise Conflict(
                gettext("Only an upload in progress can be cancelled; delete the image instead."),
                errors={"phase": [gettext("The image is %(phase)s.") % {"phase": locked.phase}]},
            )
        _remove(locked, actor=actor, action="image.upload_cancel", reason="UploadCancelled")


# --- Deleting and publishing -------------------------------------------------------------------
def image_delete(*, actor, image: Image) -> None:
    """Delete a tenant's image (tenant admins; staff in Django admin): the row, its file
    and its quota charge. An import in progress stops at its next step. Refused
    (``Conflict``) while VMs still use the image as their base."""
    if image.tenant_id is None:
        raise Conflict(gettext("Platform images are managed in Django admin."))
    authorize(
        actor=actor, tenant=image.tenant, permission="image.delete", target=f"image/{image.name}"
    )
    with transaction.atomic():
        locked = (
            Image.objects.select_for_update(of=("self",))
            .select_related("tenant")
            .filter(pk=image.pk)
            .first()
        )
        if locked is None:
            raise NotFound(gettext("Image %(image)s not found.") % {"image": repr(image.name)})
        # The tenant's own VMs by name; those of other tenants (a published image) are
        # only counted: their names are theirs.
        own = locked.vms.filter(tenant_id=locked.tenant_id)
        users = list(own.order_by("name").values_list("name", flat=True)[:5])
        if users:
            raise Conflict(
                gettext("%(image)s is the base of VM %(vms)s; delete those first.")
                % {"image": locked.name, "vms": ", ".join(users)},
                errors={"name": [gettext("In use by VMs.")]},
            )
        others = locked.vms.exclude(tenant_id=locked.tenant_id).count()
        if others:
            raise Conflict(
                ngettext(
                    "%(image)s is published, and %(count)s VM of another tenant is based on "
                    "it: it can be deleted once that VM is gone.",
                    "%(image)s is published, and %(count)s VMs of other tenants are based on "
                    "it: it can be deleted once those VMs are gone.",
                    others,
                )
                % {"image": locked.name, "count": others},
                errors={"name": [gettext("In use by VMs.")]},
            )
        _remove(locked, actor=actor, action="image.delete", reason="Deleted")


def _remove(image: Image, *, actor, action: str, reason: str) -> None:
    """Inside the caller's transaction, with the row locked: drop it, release its
    quota once, audit, and remove its files after commit."""
    paths = imagefiles.paths_for(image.tenant.slug, str(image.uid))
    try:
        with transaction.atomic():
            Image.objects.filter(pk=image.pk).delete()
    except ProtectedError:
        raise Conflict(
            gettext("%(image)s is the base of a VM; delete it first.") % {"image": image.name},
            errors={"name": [gettext("In use by VMs.")]},
        ) from None
    released = quota_release(image.quota_ref)
    audit_record(
        actor=actor,
        action=action,
        tenant=image.tenant,
        target=f"image/{image.name}",
        detail={"phase": image.phase, "storage_released": released},
    )
    _event(image, reason, image_texts.DELETED_STORAGE_RELEASED if released else image_texts.DELETED)
    resource_forget(tenant=image.tenant, kind="image", name=image.name)
    transaction.on_commit(lambda: imagefiles.remove(*paths.leftovers()))


def image_publish(*, actor, image: Image, public: bool) -> Image:
    """Platform staff make a tenant's Ready image visible to every tenant (or private
    again). The owning tenant keeps it, and its storage charge, and may delete it."""
    if not getattr(actor, "is_staff", False) and actor is not None:
        from portal.exceptions import PermissionDenied

        raise PermissionDenied(gettext("Only platform staff publish images."))
    with transaction.atomic():
        locked = (
            Image.objects.select_for_update(of=("self",)).select_related("tenant").get(pk=image.pk)
        )
        if locked.tenant_id is None:
            raise Conflict(gettext("Platform images are public already."))
        if public and locked.phase != ImagePhase.READY:
            raise Conflict(
                gettext("Only Ready images can be published; %(image)s is %(phase)s.")
                % {"image": locked.name, "phase": locked.phase}
            )
        if locked.public == public:
            return locked
        if public and Image.objects.filter(name=locked.name, tenant__isnull=True).exists():
            raise Conflict(
                gettext("A platform image is named %(image)s already.") % {"image": locked.name}
            )
        Image.objects.filter(pk=locked.pk).update(
            public=public, resource_version=F("resource_version") + 1, updated=timezone.now()
        )
        locked.refresh_from_db()
        audit_record(
            actor=actor,
            action="image.publish" if public else "image.unpublish",
            tenant=locked.tenant,
            target=f"image/{locked.name}",
        )
        _event(
            locked,
            "Published" if public else "Unpublished",
            image_texts.PUBLISHED if public else image_texts.UNPUBLISHED,
        )
        _publish(locked)
    return locked


# --- The import task's work -------------------------------------------------------------------
@contextmanager
def import_lock(image_id: int) -> Iterator[Callable[[], None]]:
    """One worker per image. Yields ``renew()``; a killed worker's lock expires after
    ``ISOTOPE_IMAGE_LOCK_SECONDS`` and the sweep starts the import again."""
    key, token = LOCK_KEY.format(pk=image_id), secrets.token_hex(8)
    seconds = settings.ISOTOPE_IMAGE_LOCK_SECONDS
    if not cache.add(key, token, timeout=seconds):
        raise ImportBusy
    last = [time.monotonic()]

    def renew() -> None:
        if time.monotonic() - last[0] > seconds / 4:
            cache.touch(key, seconds)
            last[0] = time.monotonic()

    try:
        yield renew
    finally:
        if cache.get(key) == token:
            cache.delete(key)


class ImportBusy(Exception):
    """Another worker holds this image's import lock."""


def import_lock_held(image_id: int) -> bool:
    return cache.get(LOCK_KEY.format(pk=image_id)) is not None


def _load(image_id: int) -> Image | None:
    return Image.objects.select_related("tenant").filter(pk=image_id).first()


def _cas(image: Image, phases, **fields) -> Image:
    """Compare-and-set: write ``fields`` only while the image is in one of ``phases``;
    otherwise (deleted, failed elsewhere) raise ImportStopped."""
    if "phase" in fields:
        fields.setdefault("phase_changed", timezone.now())
    count = Image.objects.filter(pk=image.pk, phase__in=list(phases)).update(
        **fields, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    if not count:
        raise ImportStopped
    image.refresh_from_db()
    return image


class _Progress:
    """Writes progress (bytes, total, rate) at most every PROGRESS_SECONDS, pushes it to
    browsers and renews the import lock."""

    def __init__(self, image: Image, phase: str, renew):
        self.image, self.phase, self.renew = image, phase, renew
        self.meter = imagefiles.RateMeter()
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        self.renew()
        now = time.monotonic()
        rate = self.meter.add(done)
        if now - self.last < PROGRESS_SECONDS and done != total:
            return
        self.last = now
        fields = {"progress_bytes": done}
        if total is not None:
            fields["progress_total"] = total
        self.image = _cas(self.image, [self.phase], **fields)
        _publish(self.image, rate=rate)


def image_import_run(image_id: int, renew=lambda: None) -> None:
    """Bring one accepted import to ``Ready`` or ``Failed`` (the task's body).

    Safe to run again at any point: it starts over from the uploaded file or a new
    download, after removing what an earlier attempt left."""
    image = _load(image_id)
    if image is None or image.phase not in IMAGE_IMPORT_PHASES:
        return
    paths = imagefiles.paths_for(image.tenant.slug, str(image.uid))
    try:
        _import(image, paths, renew)
    except ImportStopped:
        # Deleted (or failed) meanwhile: whoever did it released the quota; the files
        # of this attempt are ours to remove.
        if not Image.objects.filter(pk=image_id, phase=ImagePhase.READY).exists():
            imagefiles.remove(paths.download, paths.converting, paths.upload, paths.final)
    except ImageRefused as refusal:
        image_fail(image, str(refusal))
    except Exception as error:  # noqa: BLE001 - never leave a half image behind
        logger.exception("image import %s failed", image_id)
        image_fail(image, image_texts.FAILED_UNEXPECTEDLY % {"error": type(error).__name__})


def _import(image: Image, paths: imagefiles.ImagePaths, renew) -> None:
    imagefiles.ensure_dirs(paths)
    # What an interrupted attempt may have left (the upload itself is the source).
    imagefiles.remove(paths.download, paths.converting, paths.final)
    image = _cas(
        image,
        IMAGE_IMPORT_PHASES,
        phase=ImagePhase.IMPORTING,
        message=image_texts.DOWNLOADING
        if image.source == ImageSource.URL
        else image_texts.VERIFYING_UPLOAD,
        progress_bytes=0,
        attempts=F("attempts") + 1,
    )
    _event(
        image,
        "Importing",
        image_texts.ATTEMPT % {"attempt": image.attempts, "message": image.message},
    )
    _publish(image)
    limit = settings.ISOTOPE_IMAGE_MAX_BYTES
    if image.source == ImageSource.URL:
        if image.declared_bytes:
            limit = min(limit, image.declared_bytes)
        source = paths.download
        fetched = _fetch(image, paths, limit, renew)
        size, digest = fetched.size, fetched.sha256
        image = _charge(image, size, ImagePhase.IMPORTING)
    else:
        source = paths.upload
        if not source.exists() or source.stat().st_size != image.declared_bytes:
            raise ImageRefused(image_texts.UPLOAD_INCOMPLETE)
        size = source.stat().st_size
        digest = imagefiles.sha256_file(source, _Progress(image, ImagePhase.IMPORTING, renew))
    failpoint("image.after_fetch")
    if image.expected_sha256 and digest != image.expected_sha256:
        raise ImageRefused(
            image_texts.CHECKSUM_MISMATCH % {"digest": digest, "expected": image.expected_sha256}
        )
    from compute.services.vms import MAX_DISK_GIB

    info = imagefiles.inspect(
        source,
        min_raw_bytes=settings.ISOTOPE_IMAGE_MIN_RAW_BYTES,
        max_virtual_bytes=MAX_DISK_GIB * imagefiles.GIB,
    )
    image = _cas(
        image,
        [ImagePhase.IMPORTING],
        phase=ImagePhase.CONVERTING,
        message=image_texts.CONVERTING % {"source_format": info.format},
        sha256=digest,
        source_format=info.format,
        virtual_size_bytes=info.virtual_size,
        progress_bytes=0,
        progress_total=100,
    )
    _publish(image)
    progress = _Progress(image, ImagePhase.CONVERTING, renew)
    converted = imagefiles.convert(
        source, info.format, paths.converting, on_progress=lambda pct: progress(int(pct), 100)
    )
    failpoint("image.after_convert")
    paths.converting.rename(paths.final)
    _finish(image, paths, converted, size)


def _fetch(image: Image, paths, limit: int, renew) -> imagefiles.Fetched:
    """Download with up to three tries for transient failures (backoff 2, 4 s)."""
    for attempt in range(3):
        try:
            return imagefiles.fetch(
                image.source_url,
                paths.download,
                limit=limit,
                on_progress=_Progress(image, ImagePhase.IMPORTING, renew),
            )
        except TransientFetchError:
            imagefiles.remove(paths.download)
            if attempt == 2:
                raise
            time.sleep(2 ** (attempt + 1))
            renew()
    raise AssertionError("unreachable")


def _charge(image: Image, size_bytes: int, phase: str) -> Image:
    """True the storage charge up (or down) to ``size_bytes``, under the row lock and
    the quota row's lock, in one transaction. Raises ImageRefused when the tenant's
    quota cannot hold it."""
    gib = imagefiles.gib_for(size_bytes)
    with transaction.atomic():
        locked = Image.objects.select_for_update(of=("self",)).filter(pk=image.pk).first()
        if locked is None or locked.phase != phase:
            raise ImportStopped
        held = image.tenant.reservations.filter(ref=image.quota_ref, released__isnull=True)
        if held.filter(storage=gib).exists():
            return image
        quota_release(image.quota_ref)
        try:
            quota_reserve(
                tenant=image.tenant,
                ref=image.quota_ref,
                storage=gib,
                kind=ReservationKind.IMAGE,
                object_id=str(image.uid),
            )
        except QuotaExceeded as error:
            raise ImageRefused(
                image_texts.NEEDS_STORAGE % {"gib": gib, "quota": error.stored_message}
            ) from None
    return image


def _finish(image: Image, paths, converted: imagefiles.ImageInfo, received: int) -> None:
    """The qcow2 is in place: charge its size, record Ready, drop the source. If this
    transaction fails the file goes too (the next attempt starts over)."""
    try:
        image = _charge(image, max(converted.file_size, 1), ImagePhase.CONVERTING)
        with transaction.atomic():
            image = _cas(
                image,
                [ImagePhase.CONVERTING],
                phase=ImagePhase.READY,
                message="",
                disk_path=str(paths.final),
                disk_format="qcow2",
                size_bytes=converted.file_size,
                virtual_size_bytes=converted.virtual_size,
                progress_bytes=100,
                progress_total=100,
            )
            disk_gib = converted.virtual_size / imagefiles.GIB
            _event(
                image,
                "Ready",
                image_texts.READY
                % {
                    "source_format": image.source_format,
                    "received": f"{received:,}",
                    "file_size": f"{converted.file_size:,}",
                    "disk_gib": f"{disk_gib:.2f}",
                },
            )
            _publish(image)
    except BaseException:
        imagefiles.remove(paths.final)
        raise
    imagefiles.remove(paths.download, paths.upload)


def image_fail(image: Image, message: str) -> Image | None:
    """A refused or broken import: ``Failed`` with ``message``, its quota released
    (once) and every file of it removed. A no-op for an image that is gone or settled.

    The staging files go before the row says ``Failed``, so nobody sees a failed image
    with files still around; the final path only once the row is known to be failed
    (a settled image keeps its file)."""
    paths = imagefiles.paths_for(image.tenant.slug, str(image.uid))
    imagefiles.remove(paths.upload, paths.download, paths.converting)
    with transaction.atomic():
        try:
            image = _cas(
                image,
                [*IMAGE_IMPORT_PHASES, ImagePhase.UPLOADING],
                phase=ImagePhase.FAILED,
                message=message[:1000],
                progress_bytes=0,
            )
        except ImportStopped:
            return None
        imagefiles.remove(paths.final)
        quota_release(image.quota_ref)
        _event(image, "ImportFailed", message, warning=True)
        _publish(image)
    return image


# --- Sweep (beat) ------------------------------------------------------------------------
def images_sweep() -> dict:
    """Repair what lost its worker: imports whose lock expired are started again (or
    failed after ``ISOTOPE_IMAGE_MAX_ATTEMPTS``), uploads idle past their expiry are
    given up, and staging files that belong to no image are removed."""
    counts = {"restarted": 0, "failed": 0, "expired": 0, "orphans": 0}
    stale = timezone.now() - timedelta(seconds=settings.ISOTOPE_IMAGE_LOCK_SECONDS)
    for image in Image.objects.select_related("tenant").filter(
        phase__in=list(IMAGE_IMPORT_PHASES), updated__lt=stale
    ):
        if import_lock_held(image.pk):
            continue
        if image.attempts >= settings.ISOTOPE_IMAGE_MAX_ATTEMPTS:
            interrupted = (
                image_texts.INTERRUPTED if image.attempts != 1 else image_texts.INTERRUPTED_ONCE
            )
            if image_fail(image, interrupted % {"attempts": image.attempts}):
                counts["failed"] += 1
        else:
            _enqueue(image.pk)
            counts["restarted"] += 1
    expiry = timezone.now() - timedelta(hours=settings.ISOTOPE_IMAGE_UPLOAD_EXPIRE_HOURS)
    for image in Image.objects.select_related("tenant").filter(
        phase=ImagePhase.UPLOADING, updated__lt=expiry
    ):
        if image_fail(image, image_texts.UPLOAD_ABANDONED):
            counts["expired"] += 1
    counts["orphans"] = _remove_orphans()
    return counts


def _remove_orphans() -> int:
    staging = imagefiles.image_root() / ".staging"
    if not staging.is_dir():
        return 0
    old = time.time() - settings.ISOTOPE_IMAGE_LOCK_SECONDS
    live = {
        str(uid)
        for uid in Image.objects.filter(~Q(phase=ImagePhase.READY), source__gt="").values_list(
            "uid", flat=True
        )
    }
    removed = 0
    for path in staging.iterdir():
        uid = path.name.split(".", 1)[0]
        if uid not in live and path.stat().st_mtime < old:
            imagefiles.remove(path)
            removed += 1
    return removed


def _enqueue(image_id: int) -> None:
    from compute.tasks import images as tasks

    tasks.image_import.delay(image_id)
