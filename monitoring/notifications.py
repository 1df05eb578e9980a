"""Writes for the notification centre: telling users, marking read, preferences, email.

:func:`notify` is the one way to tell users something. It runs inside the caller's
transaction (a rolled-back change tells nobody) and respects each user's preference for
the kind: a row shown in the bell (``in_app``), an email, both or neither. Once the
transaction commits, each shown notification is pushed to the user's ``notify.<id>``
stream (the bell updates live) and each email is handed to Celery
(``monitoring.tasks.notification_email``, sent once with Django's email backend).

Events turn into notifications by rule (:data:`EVENT_RULES`): ``event_publish`` calls
:func:`notify_for_event` for every new event, so a later feature gets notifications
by publishing the agreed event. **Scheduled snapshots**
(:mod:`compute.services.snapshot_schedules`) publish
``event_publish(kind=..., reason="SnapshotFailed", type="Warning", ...)`` when a run
fails: the tenant's members are then told (kind ``snapshot.failed``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Subquery
from django.utils import timezone, translation
from django.utils.translation import gettext

from monitoring import live
from monitoring import texts as monitoring_texts
from monitoring.choices import LiveMessageType, NotificationKind, NotificationLevel
from monitoring.formats import timestamp
from monitoring.groups import notify_group
from monitoring.models import Event, Notification, NotificationPreference
from portal.exceptions import NotFound, ValidationError
from portal.texts import localize

logger = logging.getLogger(__name__)
User = get_user_model()

TITLE_MAX = 200
MESSAGE_MAX = 2000


@dataclass(frozen=True)
class EventRule:
    """New events of ``kind`` (any kind when empty) with ``reason`` notify the tenant's
    members with a notification of ``notify``."""

    reason: str
    notify: str
    kind: str = ""
    title: str = ""  # a format of monitoring.texts with %(object)s


EVENT_RULES: tuple[EventRule, ...] = (
    EventRule(
        reason="Failed",
        kind="vm",
        notify=NotificationKind.VM_FAILED,
        title=monitoring_texts.VM_FAILED,
    ),
    EventRule(
        reason="Failed",
        kind="workload",
        notify=NotificationKind.WORKLOAD_FAILED,
        title=monitoring_texts.WORKLOAD_FAILED,
    ),
    EventRule(
        reason="MigrationFailed",
        kind="vm",
        notify=NotificationKind.MIGRATION_FAILED,
        title=monitoring_texts.MIGRATION_FAILED,
    ),
    # Scheduled snapshots that fail (see the module docstring).
    EventRule(
        reason="SnapshotFailed",
        notify=NotificationKind.SNAPSHOT_FAILED,
        title=monitoring_texts.SNAPSHOT_FAILED,
    ),
)


# --- Preferences -----------------------------------------------------------------------
def preferences_of(user) -> dict[str, dict[str, bool]]:
    """``{kind: {"in_app": bool, "email": bool}}`` for every kind (defaults filled in)."""
    chosen = {
        p.kind: {"in_app": p.in_app, "email": p.email}
        for p in NotificationPreference.objects.filter(user=user)
    }
    return {
        kind: chosen.get(kind, {"in_app": True, "email": True}) for kind in NotificationKind.values
    }


@transaction.atomic
def notification_preference_set(*, user, kind: str, in_app: bool, email: bool):
    """Choose how ``user`` hears about ``kind``: in the portal, by email, both or not."""
    if kind not in NotificationKind.values:
        raise ValidationError(
            f"Unknown notification kind {kind!r}.",
            errors={"kind": [f"Choose one of {', '.join(NotificationKind.values)}."]},
        )
    preference, _ = NotificationPreference.objects.update_or_create(
        user=user, kind=kind, defaults={"in_app": bool(in_app), "email": bool(email)}
    )
    return preference


# --- Telling users -----------------------------------------------------------------------
def notify(
    *,
    users: Iterable,
    kind: str,
    title: str,
    message: str = "",
    tenant=None,
    link: str = "",
    level: str = NotificationLevel.INFO,
) -> list[Notification]:
    """Tell each of ``users`` (active ones, each once) about something of ``kind``.

    Runs in the caller's transaction. Returns the rows written (users who turned the
    kind off both ways get none)."""
    if kind not in NotificationKind.values:
        raise ValidationError("Unknown notification kind.", errors={"kind": [str(kind)]})
    if level not in NotificationLevel.values:
        raise ValidationError("Unknown notification level.", errors={"level": [str(level)]})
    people = {u.pk: u for u in users if u is not None and u.is_active}
    if not people:
        return []
    chosen = {
        p.user_id: p
        for p in NotificationPreference.objects.filter(user_id__in=list(people), kind=kind)
    }
    rows = []
    for user_id in sorted(people):
        preference = chosen.get(user_id)
        in_app = preference.in_app if preference else True
        email = (preference.email if preference else True) and bool(people[user_id].email)
        if not in_app and not email:
            continue
        rows.append(
            Notification(
                user_id=user_id,
                tenant=tenant,
                tenant_slug=tenant.slug if tenant is not None else "",
                kind=kind,
                level=level,
                title=str(title)[:TITLE_MAX],
                message=str(message or "")[:MESSAGE_MAX],
                link=str(link or "")[:300],
                in_app=in_app,
                email=email,
            )
        )
    if not rows:
        return []
    created = Notification.objects.bulk_create(rows)
    if not all(row.pk for row in created):  # backends that do not return ids
        created = list(
            Notification.objects.filter(uid__in=[row.uid for row in rows]).order_by("id")
        )
    shown = [row.pk for row in created if row.in_app]
    mailed = [row.pk for row in created if row.email]
    transaction.on_commit(lambda: _announce(shown, mailed), robust=True)
    return created


def notify_for_event(*, tenant, event: Event) -> list[Notification]:
    """Apply :data:`EVENT_RULES` to a new event: its tenant's members are told."""
    rule = next(
        (
            r
            for r in EVENT_RULES
            if r.reason == event.reason and (not r.kind or r.kind == event.kind)
        ),
        None,
    )
    if rule is None:
        return []
    from tenants.models import Membership

    members = [
        m.user
        for m in Membership.objects.filter(tenant=tenant, user__is_active=True).select_related(
            "user"
        )
    ]
    return notify(
        users=members,
        kind=rule.notify,
        title=(rule.title % {"object": f"{event.kind}/{event.name}"})
        if rule.title
        else f"{event.reason}: {event.kind}/{event.name}",
        message=event.message,
        tenant=tenant,
        link=object_link(tenant.slug, event.kind, event.name),
        level=NotificationLevel.DANGER,
    )


def object_link(slug: str, kind: str, name: str) -> str:
    """The portal page of an object an event is about (the timeline otherwise)."""
    pages = {"vm": f"/t/{slug}/vms/{name}/", "workload": f"/t/{slug}/workloads/{name}/"}
    return pages.get(kind, f"/t/{slug}/events/")


def notification_data(notification: Notification) -> dict:
    """A notification as the bell, the list page and live messages see it."""
    return {
        "uid": str(notification.uid),
        "kind": notification.kind,
        "level": notification.level,
        "title": notification.title,
        "message": notification.message,
        "link": notification.link,
        "tenant": notification.tenant_slug,
        "created": timestamp(notification.created),
        "read": timestamp(notification.read) if notification.read else None,
    }


def _shown(user_id: int):
    """The user's notifications shown in the portal (newest first)."""
    return Notification.objects.filter(user_id=user_id, in_app=True)


def _unread(user_id: int):
    return _shown(user_id).filter(read__isnull=True)


def notifications_recent(user_id: int, *, limit: int = 8) -> list[Notification]:
    """The user's latest notifications shown in the portal, newest first."""
    return list(_shown(user_id)[:limit])


def notifications_snapshot(user_id: int) -> dict:
    """What a resync of ``notify.<id>`` returns: the latest ones and the unread count."""
    return {
        "notifications": [notification_data(n) for n in notifications_recent(user_id)],
        "unread": unread_count(user_id),
    }


def bell(user_id: int, *, limit: int = 6) -> tuple[int, list[Notification]]:
    """The top bar's bell: the unread count and the latest ``limit`` shown notifications,
    in one statement (the count is a sub-select each row carries; no rows: none unread,
    as an unread notification is a shown one)."""
    unread = _unread(user_id).order_by().values("user_id").annotate(n=Count("pk")).values("n")
    rows = list(_shown(user_id).annotate(unread_total=Subquery(unread))[:limit])
    return ((rows[0].unread_total or 0) if rows else 0), rows


def unread_count(user_id: int) -> int:
    return _unread(user_id).count()


def _announce(shown: list[int], mailed: list[int]) -> None:
    """After commit: push each shown notification to its user's stream, queue emails."""
    if shown:
        messages = []
        for row in Notification.objects.filter(pk__in=shown).order_by("id"):
            data = {"notification": notification_data(row), "unread": unread_count(row.user_id)}
            messages.append(([notify_group(row.user_id)], LiveMessageType.NOTIFICATION, data))
        try:
            live.broadcast_many(messages)
        except Exception:  # noqa: BLE001 - the bell catches up on the next page or resync
            logger.exception("could not push %s notification(s)", len(messages))
    for pk in mailed:
        _email_enqueue(pk)


def _email_enqueue(notification_id: int) -> None:
    from monitoring.tasks import notification_email

    try:
        notification_email.apply_async((notification_id,), retry=False)
    except Exception:  # noqa: BLE001 - the sweep sends what the broker lost
        logger.exception("could not queue email for notification %s", notification_id)


def _counts_changed(user_id: int) -> None:
    """Tell the user's other tabs the unread count changed (they marked something read)."""
    data = {"notification": None, "unread": unread_count(user_id)}
    try:
        live.broadcast([notify_group(user_id)], LiveMessageType.NOTIFICATION, data)
    except Exception:  # noqa: BLE001 - the other tabs catch up on their next page
        logger.exception("could not push the unread count of user %s", user_id)


# --- Reading -------------------------------------------------------------------------------
@transaction.atomic
def notification_mark_read(*, user, uid: str | None = None) -> int:
    """Mark one of ``user``'s notifications read (``uid``), or all of them. Returns how
    many changed; another user's notification is ``NotFound``."""
    mine = Notification.objects.filter(user=user, in_app=True)
    if uid is not None:
        try:
            one = mine.filter(uid=uid)
            exists = one.exists()
        except Exception:  # noqa: BLE001 - not a uuid
            exists = False
        if not exists:
            raise NotFound("No such notification.")
        mine = one
    changed = mine.filter(read__isnull=True).update(read=timezone.now())
    if changed:
        user_id = user.pk
        transaction.on_commit(lambda: _counts_changed(user_id), robust=True)
    return changed


# --- Email ---------------------------------------------------------------------------------
def notification_email_send(*, notification_id: int) -> bool:
    """Send one notification's email, once. Idempotent: a notification already mailed,
    not wanted by email, or locked by another worker right now is left alone. The
    ``emailed`` mark and the sending share a transaction: a failed send is retried."""
    with transaction.atomic():
        row = (
            Notification.objects.select_for_update(skip_locked=True)
            .select_related("user")
            .filter(pk=notification_id, email=True, emailed__isnull=True)
            .first()
        )
        if row is None:
            return False
        if not row.user.email:  # the address went since: nothing to send, ever
            row.email = False
            row.save(update_fields=["email"])
            return False
        base = getattr(settings, "ISOTOPE_PUBLIC_URL", "").rstrip("/")
        # In the language the recipient chose on their profile (English when none).
        from tenants.models import UserPreference

        language = (
            UserPreference.objects.filter(user=row.user).values_list("language", flat=True).first()
        )
        if not language or not translation.check_for_language(language):
            language = settings.LANGUAGE_CODE
        with translation.override(language):
            shown_title = localize(row.title)
            lines = [localize(row.message)] if row.message else []
            if row.link:
                lines.append(
                    f"{base}{row.link}"
                    if base
                    else gettext("In the portal: %(link)s") % {"link": row.link}
                )
            lines += ["", gettext("Change what you are told about on your profile page.")]
        send_mail(
            subject=f"[Isotope] {shown_title}",
            message="\n".join(lines),
            from_email=None,
            recipient_list=[row.user.email],
        )
        row.emailed = timezone.now()
        row.save(update_fields=["emailed"])
    return True


def notification_emails_pending(*, older_than_seconds: float = 120) -> list[int]:
    """Wanted emails not sent a while after their notification (a lost task), for a day
    at most (an address that keeps refusing is not tried forever)."""
    now = timezone.now()
    return list(
        Notification.objects.filter(
            email=True,
            emailed__isnull=True,
            created__lt=now - timedelta(seconds=older_than_seconds),
            created__gt=now - timedelta(days=1),
        ).values_list("pk", flat=True)[:500]
    )
