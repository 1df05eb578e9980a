"""Writes for tenants, memberships, quota, audit and API tokens.

Every privileged action records an :class:`~tenants.models.AuditLog` row. Quota
reservations lock the tenant's quota row inside the caller's transaction, so two
concurrent creates can never both take the last unit.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from portal import sql
from portal.exceptions import (
    Conflict,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    Shortfall,
    ValidationError,
)
from portal.middleware import source_ip
from tenants import texts as tenant_texts
from tenants.choices import (
    AuditOutcome,
    Confirmation,
    MembershipSource,
    ReservationKind,
    Role,
    Theme,
)
from tenants.models import (
    DNS_LABEL,
    QUOTA_RESOURCES,
    ApiToken,
    AuditLog,
    GroupMapping,
    Membership,
    Quota,
    Reservation,
    Tenant,
    UserPreference,
)

logger = logging.getLogger(__name__)
User = get_user_model()


# --- Audit -----------------------------------------------------------------------------
def actor_name(actor) -> str:
    """How messages and events name who asked: a user's username, a named system actor
    (e.g. ``"reconciler"``) as given, else "the system"."""
    if getattr(actor, "is_authenticated", False):
        return actor.get_username()
    if isinstance(actor, str) and actor:
        return actor
    return tenant_texts.THE_SYSTEM


def audit_record(
    *,
    actor,
    action: str,
    tenant: Tenant | None = None,
    target: str = "",
    outcome: str = AuditOutcome.SUCCESS,
    detail: dict | None = None,
    ip: str | None = None,
) -> AuditLog:
    """Append one audit entry. ``ip`` defaults to the current request's client. Inside
    a ``portal.sql.batch`` the entry is written with the batch (no key until then)."""
    user = actor if getattr(actor, "is_authenticated", False) else None
    # Written in (portal.sql): every privileged action of every request appends one; in
    # the caller's batch when it has one (its key is set when the batch is written).
    return sql.insert_later(
        AuditLog(
            actor=user,
            actor_name=user.get_username() if user else (str(actor) if actor else "system"),
            tenant=tenant,
            tenant_slug=tenant.slug if tenant else "",
            action=action,
            target=target,
            outcome=outcome,
            source_ip=ip or source_ip.get(),
            detail=detail or {},
        )
    )


def authorize(*, actor, tenant: Tenant, permission: str, target: str = "") -> None:
    """Raise ``PermissionDenied`` (and audit the refusal) unless ``actor``'s role in
    ``tenant`` allows ``permission``. Services call it too, so no path goes around the
    permission map; ``None`` (or an ``is_system`` actor) is the system itself."""
    from tenants import selectors

    if actor is None or getattr(actor, "is_system", False):
        return
    if selectors.can(actor, tenant, permission):
        return
    audit_record(
        actor=actor,
        action=permission,
        tenant=tenant,
        target=target,
        outcome=AuditOutcome.DENIED,
    )
    role = selectors.role_of(actor, tenant)
    raise PermissionDenied(
        gettext("Your role (%(role)s) does not allow %(permission)s in %(tenant)s.")
        % {"role": role, "permission": permission, "tenant": tenant.slug}
    )


def tenant_access(*, user, slug: str, action: str, target: str = "", row=None) -> Tenant:
    """``selectors.tenant_get`` for a request: a refused non-read action is audited.
    ``row``: the tenant row this request read already (None: not read)."""
    from tenants import selectors

    try:
        read = selectors.UNREAD if row is None else row
        return selectors.tenant_get(user, slug, action, row=read)
    except PermissionDenied:
        if not action.endswith(".view"):
            audit_record(
                actor=user,
                action=action,
                tenant=selectors.tenant_by_slug(slug),
                target=target,
                outcome=AuditOutcome.DENIED,
            )
        raise


# --- Tenants and memberships -----------------------------------------------------------
@transaction.atomic
def tenant_create(
    *, actor, slug: str, name: str = "", description: str = "", quota: dict | None = None
) -> Tenant:
    """Create a tenant with its quota (settings ``ISOTOPE_DEFAULT_QUOTA`` unless given).

    ``Conflict`` when the slug is taken — also when another request creates the same
    slug at the same moment (the unique constraint decides; nothing is left behind).
    """
    slug = (slug or "").strip()
    errors: dict[str, list[str]] = {}
    try:
        DNS_LABEL(slug)
    except Exception:  # noqa: BLE001 - Django's ValidationError, reported as a field error
        errors["slug"] = ["Use lowercase letters, digits and hyphens (e.g. acme)."]
    if len(slug) > 40:
        errors["slug"] = ["At most 40 characters."]
    if errors:
        raise ValidationError(gettext("Invalid tenant."), errors=errors)
    limits = _validate_limits({**settings.ISOTOPE_DEFAULT_QUOTA, **(quota or {})})
    taken = Conflict(f"A tenant named {slug!r} exists already.", errors={"slug": ["Taken."]})
    if Tenant.objects.filter(slug=slug).exists():
        raise taken
    try:
        with transaction.atomic():
            tenant = Tenant.objects.create(slug=slug, name=name or slug, description=description)
    except IntegrityError:
        # A concurrent create won between the check above and the insert.
        raise taken from None
    Quota.objects.create(tenant=tenant, **limits)
    audit_record(actor=actor, action="tenant.create", tenant=tenant, target=slug)
    return tenant


TENANT_EDITABLE = ("name", "description")


@transaction.atomic
def tenant_update(*, actor, tenant: Tenant, changes: dict) -> Tenant:
    """Write ``changes`` (name, description) to the tenant's row, locked, and nothing
    else: its other fields may have been changed since the caller read them (platform
    staff). Audited with the names of the fields changed."""
    unknown = set(changes) - set(TENANT_EDITABLE)
    if unknown:
        raise ValueError(f"tenant_update cannot change {sorted(unknown)}")
    locked = Tenant.locked(tenant.pk)
    if locked is None:
        raise NotFound(gettext("Tenant %(tenant)s not found.") % {"tenant": repr(tenant.slug)})
    locked.write_locked(changes, copies=(tenant,))
    audit_record(
        actor=actor,
        action="tenant.update",
        tenant=locked,
        target=locked.slug,
        detail={"fields": sorted(changes)},
    )
    return locked


#: Rows of ``compute`` that are a tenant's history, not something it owns: they go with
#: the tenant (a migration's VM, if still there, is counted itself).
_TENANT_HISTORY = {("compute", "migration")}


def _tenant_owned(tenant: Tenant) -> list[str]:
    """What ``tenant`` still owns in ``compute`` (what runs or is stored on hosts and
    clusters, or holds its quota), as "2 virtual machines", in the models' own names."""
    owned = []
    for relation in Tenant._meta.related_objects:
        model = relation.related_model
        if model._meta.app_label != "compute":
            continue
        if (model._meta.app_label, model._meta.model_name) in _TENANT_HISTORY:
            continue
        count = model._base_manager.filter(**{relation.field.name: tenant}).count()
        if count:
            name = model._meta.verbose_name if count == 1 else model._meta.verbose_name_plural
            owned.append(f"{count} {name}")
    return owned


@transaction.atomic
def tenant_delete(*, actor, tenant: Tenant) -> None:
    """Delete an empty tenant (platform staff): its memberships, quota, group mappings,
    webhooks, events and quota requests go with it; its audit and usage rows stay, with
    its slug. Audited in the same transaction.

    Refused (``Conflict``, nothing changed) while it owns anything in ``compute`` (VMs,
    volumes, snapshots, backups, images, networks, security groups, pools, workloads,
    Services, namespaces): its row going would leave their libvirt domains, disks and
    Kubernetes objects running with no tenant to show, bill or delete them. They are
    deleted through the portal first. The tenant's row is locked first, so a resource
    created meanwhile waits for this transaction and then finds no tenant."""
    locked = Tenant.locked(tenant.pk)
    if locked is None:
        raise NotFound(gettext("Tenant %(tenant)s not found.") % {"tenant": repr(tenant.slug)})
    owned = _tenant_owned(locked)
    if owned:
        raise Conflict(
            gettext(
                "%(tenant)s still owns %(owned)s: delete them in the portal first (a tenant's "
                "VMs and workloads keep running when only its row goes)."
            )
            % {"tenant": locked.slug, "owned": ", ".join(owned)},
            errors={"tenant": [gettext("Not empty.")]},
        )
    members = [m.user for m in Membership.objects.filter(tenant=locked).select_related("user")]
    audit_record(
        actor=actor,
        action="tenant.delete",
        tenant=locked,
        target=locked.slug,
        detail={"name": locked.name, "members": sorted(u.username for u in members)},
    )
    locked.delete()  # the audit row keeps the slug; its tenant link becomes NULL
    for member in members:
        _membership_changed(tenant, member)


def _user_for(username_or_user) -> User:
    if isinstance(username_or_user, User):
        return username_or_user
    try:
        # PostgreSQL cannot compare text holding NUL: such a name is nobody's.
        if not isinstance(username_or_user, str) or "\x00" in username_or_user:
            raise User.DoesNotExist
        return User.objects.get(username=username_or_user)
    except User.DoesNotExist:
        raise ValidationError(
            gettext("No user named %(username)s.") % {"username": repr(username_or_user)},
            errors={"user": [gettext("Unknown user.")]},
        ) from None


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise ValidationError(
            gettext("Unknown role %(role)s.") % {"role": repr(role)},
            errors={
                "role": [gettext("Choose one of %(codes)s.") % {"codes": ", ".join(Role.values)}]
            },
        )


@transaction.atomic
def membership_add(
    *,
    actor,
    tenant: Tenant,
    user,
    role: str = Role.VIEWER,
    source: str = MembershipSource.LOCAL,
) -> Membership:
    """Make ``user`` a member of ``tenant`` with ``role``. ``source`` says who manages
    it: people (``local``) or the single sign-on groups (``oidc``)."""
    _check_role(role)
    member = _user_for(user)
    try:
        with transaction.atomic():
            membership = Membership.objects.create(
                user=member, tenant=tenant, role=role, source=source
            )
    except IntegrityError:
        raise Conflict(
            gettext("%(username)s is already a member of %(tenant)s.")
            % {"username": member.username, "tenant": tenant.slug},
            errors={"user": [gettext("Already a member.")]},
        ) from None
    audit_record(
        actor=actor,
        action="member.add",
        tenant=tenant,
        target=member.username,
        detail={"role": role, "source": source},
    )
    return membership


@transaction.atomic
def membership_set_role(*, actor, tenant: Tenant, user, role: str) -> Membership:
    """Change a member's role."""
    _check_role(role)
    member = _user_for(user)
    membership = Membership.objects.select_for_update().filter(tenant=tenant, user=member).first()
    if membership is None:
        raise NotFound(
            gettext("%(username)s is not a member of %(tenant)s.")
            % {"username": member.username, "tenant": tenant.slug}
        )
    if membership.role == Role.ADMIN and role != Role.ADMIN and _is_last_admin(membership):
        raise Conflict(
            gettext("A tenant keeps at least one admin."), errors={"role": [gettext("Last admin.")]}
        )
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        actor=actor,
        action="member.set_role",
        tenant=tenant,
        target=member.username,
        detail={"from": old, "to": role, "source": membership.source},
    )
    _membership_changed(tenant, member)
    return membership


@transaction.atomic
def membership_remove(*, actor, tenant: Tenant, user) -> None:
    """Remove a member. Removing the tenant's last admin is refused."""
    member = _user_for(user)
    membership = Membership.objects.select_for_update().filter(tenant=tenant, user=member).first()
    if membership is None:
        raise NotFound(
            gettext("%(username)s is not a member of %(tenant)s.")
            % {"username": member.username, "tenant": tenant.slug}
        )
    if membership.role == Role.ADMIN and _is_last_admin(membership):
        raise Conflict(
            gettext("A tenant keeps at least one admin."), errors={"user": [gettext("Last admin.")]}
        )
    membership.delete()
    audit_record(
        actor=actor,
        action="member.remove",
        tenant=tenant,
        target=member.username,
        detail={"role": membership.role, "source": membership.source},
    )
    _membership_changed(tenant, member)


ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@transaction.atomic
def tenant_set_require_2fa(*, actor, tenant: Tenant, required: bool) -> None:
    """Require (or stop requiring) a second factor of the tenant's members for its
    pages, session API and live streams (platform staff). Audited. Once required, the
    members' open live sockets re-check their streams of the tenant (those signed in
    without a second factor lose them)."""
    if required:
        for membership in Membership.objects.filter(tenant=tenant).select_related("user"):
            _membership_changed(tenant, membership.user)
    Tenant.objects.filter(pk=tenant.pk).update(
        require_2fa=required, resource_version=F("resource_version") + 1, updated=timezone.now()
    )
    tenant.require_2fa = required
    audit_record(
        actor=actor,
        action="tenant.require_2fa",
        tenant=tenant,
        target=tenant.slug,
        detail={"required": required},
    )


@transaction.atomic
def group_mapping_save(*, actor, mapping: GroupMapping, created: bool) -> GroupMapping:
    """Create or change a group → tenant role mapping (platform staff). Audited; it
    applies at each member's next single sign-on."""
    _check_role(mapping.role)
    mapping.group = (mapping.group or "").strip()
    if not mapping.group:
        raise ValidationError(gettext("Name the group."), errors={"group": [gettext("Required.")]})
    mapping.save()
    audit_record(
        actor=actor,
        action="sso.mapping.add" if created else "sso.mapping.change",
        tenant=mapping.tenant,
        target=f"group/{mapping.group}",
        detail={"group": mapping.group, "role": mapping.role},
    )
    return mapping


@transaction.atomic
def group_mapping_delete(*, actor, mapping: GroupMapping) -> None:
    """Remove a mapping (platform staff). Audited; its members lose the membership at
    their next single sign-on."""
    tenant, group, role = mapping.tenant, mapping.group, mapping.role
    mapping.delete()
    audit_record(
        actor=actor,
        action="sso.mapping.delete",
        tenant=tenant,
        target=f"group/{group}",
        detail={"group": group, "role": role},
    )


@dataclass(frozen=True)
class GroupSync:
    added: list[str]
    changed: list[str]
    removed: list[str]
    kept: list[str]
    """Mapped memberships a rule kept (e.g. the tenant's last admin), with the reason."""


@transaction.atomic
def membership_sync_groups(*, user, groups, provider: str) -> GroupSync:
    """Make ``user``'s single sign-on memberships match their provider ``groups``.

    Every ``GroupMapping`` of one of the groups grants its role in its tenant (the
    highest, when several do). Memberships this made earlier (source ``oidc``) that no
    group grants any more are removed — which closes the user's live sessions and
    consoles of that tenant (``membership_remove``) — or get the new role. Local
    memberships are never touched, and a tenant where the user is a local member is
    skipped. Each change is audited by the membership service with the actor
    ``sso:<provider>``; a removal the last-admin rule refuses is audited as failed.
    """
    member = _user_for(user)
    names = sorted({g for g in groups if isinstance(g, str) and g})
    wanted: dict[int, GroupMapping] = {}
    for mapping in GroupMapping.objects.filter(group__in=names).select_related("tenant"):
        best = wanted.get(mapping.tenant_id)
        if best is None or ROLE_RANK[mapping.role] > ROLE_RANK[best.role]:
            wanted[mapping.tenant_id] = mapping
    current = {
        m.tenant_id: m
        for m in Membership.objects.select_for_update().filter(user=member).select_related("tenant")
    }
    actor = f"sso:{provider}"
    added, changed, removed, kept = [], [], [], []
    for tenant_id, mapping in sorted(wanted.items(), key=lambda item: item[1].tenant.slug):
        membership = current.get(tenant_id)
        if membership is None:
            membership_add(
                actor=actor,
                tenant=mapping.tenant,
                user=member,
                role=mapping.role,
                source=MembershipSource.OIDC,
            )
            added.append(mapping.tenant.slug)
        elif membership.source == MembershipSource.OIDC and membership.role != mapping.role:
            try:
                membership_set_role(
                    actor=actor, tenant=mapping.tenant, user=member, role=mapping.role
                )
                changed.append(mapping.tenant.slug)
            except Conflict as error:
                kept.append(f"{mapping.tenant.slug}: {error.message}")
    for tenant_id, membership in sorted(current.items(), key=lambda item: item[1].tenant.slug):
        if membership.source != MembershipSource.OIDC or tenant_id in wanted:
            continue
        try:
            membership_remove(actor=actor, tenant=membership.tenant, user=member)
            removed.append(membership.tenant.slug)
        except Conflict as error:
            kept.append(f"{membership.tenant.slug}: {error.message}")
            audit_record(
                actor=actor,
                action="member.remove",
                tenant=membership.tenant,
                target=member.username,
                outcome=AuditOutcome.FAILED,
                detail={"source": membership.source, "reason": error.message},
            )
    return GroupSync(added=added, changed=changed, removed=removed, kept=kept)


def _is_last_admin(membership: Membership) -> bool:
    """True when the tenant has no other admin. Locks the tenant row first, so two
    concurrent demotions or removals of its last two admins cannot both pass."""
    list(Tenant.objects.select_for_update().filter(pk=membership.tenant_id).values("pk"))
    return (
        not Membership.objects.filter(tenant_id=membership.tenant_id, role=Role.ADMIN)
        .exclude(pk=membership.pk)
        .exists()
    )


def _membership_changed(tenant: Tenant, user) -> None:
    """Tell live sessions (websockets) to re-check access once the change is committed."""
    from portal import signals

    transaction.on_commit(
        lambda: signals.membership_changed.send(sender=Membership, tenant=tenant, user=user)
    )


# --- User accounts (platform staff) ---------------------------------------------------
@transaction.atomic
def user_set_active(*, actor, user, active: bool) -> User:
    """Activate or deactivate an account. Deactivating signs the user out everywhere:
    once committed, every open websocket of theirs (live updates, consoles) closes, and
    their sessions and API tokens stop authenticating. Audited; a no-op when unchanged.
    Staff cannot deactivate themselves (``Conflict``)."""
    member = _user_for(user)
    if not active and getattr(actor, "pk", None) == member.pk:
        raise Conflict(
            gettext("You cannot deactivate your own account."),
            errors={"is_active": [gettext("You.")]},
        )
    changed = User.objects.filter(pk=member.pk, is_active=not active).update(is_active=active)
    member.is_active = active
    if not changed:
        return member
    audit_record(
        actor=actor,
        action="user.activate" if active else "user.deactivate",
        target=f"user/{member.username}",
    )
    if not active:
        _user_signed_out(member.pk)
    return member


@transaction.atomic
def user_delete(*, actor, user) -> None:
    """Delete an account with its memberships (platform staff). Refused (``Conflict``)
    while it is a tenant's last admin; audited; its open websockets close."""
    member = _user_for(user)
    memberships = list(
        Membership.objects.select_for_update().filter(user=member).select_related("tenant")
    )
    for membership in memberships:
        if membership.role == Role.ADMIN and _is_last_admin(membership):
            raise Conflict(
                gettext(
                    "%(username)s is the last admin of %(tenant)s: make someone else its admin "
                    "first."
                )
                % {"username": member.username, "tenant": membership.tenant.slug},
                errors={"user": [gettext("Last admin.")]},
            )
    user_id, username = member.pk, member.username
    member.delete()
    audit_record(
        actor=actor,
        action="user.delete",
        target=f"user/{username}",
        detail={"tenants": sorted(m.tenant.slug for m in memberships)},
    )
    _user_signed_out(user_id)


#: Account fields platform staff edit in Django admin (``is_active`` has
#: ``user_set_active``, the password ``user_set_password``).
USER_EDITABLE = (
    "username",
    "first_name",
    "last_name",
    "email",
    "is_staff",
    "is_superuser",
    "last_login",
    "date_joined",
)
#: Fields whose values (not only names) the audit entry keeps: who became staff.
USER_PRIVILEGES = ("is_staff", "is_superuser")


@transaction.atomic
def user_create(*, actor, user) -> User:
    """Save ``user``, a new account built by the caller (its password set or made
    unusable), for platform staff. Audited with its privileges and whether it can sign
    in with a password."""
    if user.pk is not None:
        raise ValueError("user_create saves new accounts only")
    user.save()
    audit_record(
        actor=actor,
        action="user.create",
        target=f"user/{user.username}",
        detail={
            **{flag: bool(getattr(user, flag)) for flag in USER_PRIVILEGES},
            "password": user.has_usable_password(),
        },
    )
    return user


@transaction.atomic
def user_update(*, actor, user, changes: dict) -> User:
    """Write ``changes`` (``USER_EDITABLE`` fields) to the account's row, locked, and
    nothing else. Audited with the names of the fields changed, and for a privilege
    (``is_staff``, ``is_superuser``) its value before and after; a no-op when nothing
    differs from the row."""
    unknown = set(changes) - set(USER_EDITABLE)
    if unknown:
        raise ValueError(f"user_update cannot change {sorted(unknown)}")
    locked = User.objects.select_for_update().filter(pk=user.pk).first()
    if locked is None:
        raise NotFound(gettext("No user named %(username)s.") % {"username": repr(user.username)})
    before = {name: getattr(locked, name) for name in changes}
    changed = {name: value for name, value in changes.items() if before[name] != value}
    for name, value in changes.items():
        setattr(user, name, value)
    if not changed:
        return user
    for name, value in changed.items():
        setattr(locked, name, value)
    locked.save(update_fields=sorted(changed))
    detail: dict = {"fields": sorted(changed)}
    for flag in USER_PRIVILEGES:
        if flag in changed:
            detail[flag] = {"from": bool(before[flag]), "to": bool(changed[flag])}
    if "username" in changed:
        detail["username_was"] = before["username"]
    audit_record(actor=actor, action="user.update", target=f"user/{locked.username}", detail=detail)
    return user


def _set_related(*, actor, user, field: str, wanted, label, action: str) -> None:
    """Make the account's ``field`` (a many-to-many) hold ``wanted``, with its row
    locked; audit what was added and removed (by ``label``), when anything was."""
    locked = User.objects.select_for_update().filter(pk=user.pk).first()
    if locked is None:
        raise NotFound(gettext("No user named %(username)s.") % {"username": repr(user.username)})
    manager = getattr(locked, field)
    current = set(manager.all())
    wanted = set(wanted)
    added, removed = wanted - current, current - wanted
    if not (added or removed):
        return
    manager.add(*added)
    manager.remove(*removed)
    audit_record(
        actor=actor,
        action=action,
        target=f"user/{locked.username}",
        detail={"added": sorted(map(label, added)), "removed": sorted(map(label, removed))},
    )


@transaction.atomic
def user_set_groups(*, actor, user, groups) -> None:
    """Make ``user`` a member of exactly ``groups`` (Django permission groups: what they
    grant in admin). Audited with the groups added and removed."""
    _set_related(
        actor=actor,
        user=user,
        field="groups",
        wanted=groups,
        label=lambda group: group.name,
        action="user.set_groups",
    )


@transaction.atomic
def user_set_permissions(*, actor, user, permissions) -> None:
    """Give ``user`` exactly ``permissions`` of their own (besides their groups').
    Audited with the permissions added and removed (``app_label.codename``)."""
    _set_related(
        actor=actor,
        user=user,
        field="user_permissions",
        wanted=permissions,
        label=lambda p: f"{p.content_type.app_label}.{p.codename}",
        action="user.set_permissions",
    )


@transaction.atomic
def user_set_password(*, actor, user, password: str | None, keep_session_key: str = "") -> User:
    """Set the account's password (platform staff), or with ``None`` make it unusable:
    the account then signs in only through single sign-on. Its sessions stop
    authenticating (Django checks the password's hash) and, once committed, their open
    websockets close: Django never looks at a socket again. ``keep_session_key``: the
    session of staff setting their own password, which stays signed in (the caller
    updates its hash) and keeps its sockets. Audited (never the password)."""
    locked = User.objects.select_for_update().filter(pk=user.pk).first()
    if locked is None:
        raise NotFound(gettext("No user named %(username)s.") % {"username": repr(user.username)})
    if password is None:
        locked.set_unusable_password()
    else:
        locked.set_password(password)
    locked.save(update_fields=["password"])
    user.password = locked.password
    audit_record(
        actor=actor,
        action="user.set_password",
        target=f"user/{locked.username}",
        detail={"usable": password is not None},
    )
    _user_signed_out(locked.pk, keep_session_key=keep_session_key)
    return user


def _user_signed_out(user_id: int, keep_session_key: str = "") -> None:
    """Close every live session (websocket) of the user once the change is committed,
    but those of ``keep_session_key``."""
    from portal import signals

    transaction.on_commit(
        lambda: signals.user_signed_out.send(
            sender=User, user_id=user_id, keep_session_key=keep_session_key
        )
    )


# --- Sign-in lockouts (django-axes) ---------------------------------------------------
def login_lockout_record(*, username: str, ip: str | None, path: str, failures: int) -> None:
    """Audit that sign-in is locked out for ``username`` and/or from ``ip`` (called once
    per lockout, when the failure that reaches the limit is counted)."""
    audit_record(
        actor=username or "anonymous",
        action="auth.lockout",
        target=f"user/{username}" if username else "",
        outcome=AuditOutcome.DENIED,
        detail={"username": username, "failures": failures, "path": path[:200]},
        ip=ip,
    )


def login_lockout_reset(*, actor, username: str = "", ip: str = "") -> int:
    """Forget the failed sign-ins of ``username`` and of ``ip`` (either or both), which
    lifts their lockout at once (platform staff). Returns how many records went; audited."""
    from axes.utils import reset

    if not username and not ip:
        raise ValidationError(gettext("Say which username or address to unlock."))
    count = reset(ip=ip or None, username=username or None, ip_or_username=bool(username and ip))
    audit_record(
        actor=actor,
        action="auth.unlock",
        target=f"user/{username}" if username else f"ip/{ip}",
        detail={"username": username, "ip": ip, "records": count},
    )
    return count


# --- Quota -----------------------------------------------------------------------------
def _validate_limits(limits: dict) -> dict:
    clean: dict = {}
    errors: dict[str, list[str]] = {}
    for resource, value in limits.items():
        if resource not in QUOTA_RESOURCES:
            errors[resource] = ["Unknown quota resource."]
            continue
        try:
            number = Decimal(str(value)) if resource == "cpu" else int(value)
            if resource != "cpu" and Decimal(str(value)) != number:
                raise ValueError
        except (ValueError, ArithmeticError, TypeError):
            errors[resource] = ["Enter a whole number." if resource != "cpu" else "Enter a number."]
            continue
        if number < 0:
            errors[resource] = ["Must be zero or more."]
        elif number > 10**9:
            errors[resource] = ["Too large."]
        elif resource == "cpu" and number != number.quantize(Decimal("0.001")):
            errors[resource] = ["At most three decimals (millicores)."]
        else:
            clean[resource] = number
    if errors:
        raise ValidationError(gettext("Invalid quota."), errors=errors)
    return clean


@dataclass(frozen=True)
class QuotaChange:
    quota: Quota
    below_use: list[str]
    """Resources whose new limit is below current use: allowed, new reservations refused."""


@transaction.atomic
def quota_set(*, actor, tenant: Tenant, limits: dict) -> QuotaChange:
    """Change a tenant's limits (platform staff). Lowering below use is allowed."""
    clean = _validate_limits(limits)
    quota = Quota.objects.select_for_update().get(tenant=tenant)
    before = {r: str(quota.limit(r)) for r in clean}
    for resource, value in clean.items():
        setattr(quota, resource, value)
    quota.save()
    below = [r for r in QUOTA_RESOURCES if quota.used(r) > quota.limit(r)]
    audit_record(
        actor=actor,
        action="quota.set",
        tenant=tenant,
        target=f"quota/{tenant.slug}",
        detail={
            "from": before,
            "to": {r: str(v) for r, v in clean.items()},
            "below_use": below,
        },
    )
    from portal import signals

    transaction.on_commit(lambda: signals.quota_changed.send(sender=Quota, tenant=tenant))
    return QuotaChange(quota=quota, below_use=below)


def _refuse_shortfalls(quota: Quota, request: dict) -> None:
    """Every resource that does not fit, so the refusal names them all at once."""
    shortfalls = [
        Shortfall(
            resource=resource,
            requested=amount,
            left=max(quota.limit(resource) - quota.used(resource), 0),
            limit=quota.limit(resource),
            unit=QUOTA_RESOURCES[resource],
        )
        for resource, amount in request.items()
        if amount > 0 and quota.used(resource) + amount > quota.limit(resource)
    ]
    if shortfalls:
        raise QuotaExceeded(shortfalls)


def quota_check(*, tenant: Tenant, **amounts) -> Quota:
    """Raise ``QuotaExceeded`` naming every resource ``amounts`` (cpu, memory, storage,
    vms, pods, networks) would take past the limit. For a create charged on several reservations
    (a VM and its root disk's volume): checked together first, under the quota row's
    lock, so the refusal names all of them. Inside the caller's transaction. Returns the
    quota row it locked (for ``quota_reserve(locked=…)`` in the same transaction)."""
    _inside_the_create("quota_check")
    request = {r: Decimal(str(amounts.get(r, 0))) for r in QUOTA_RESOURCES}
    quota = Quota.objects.select_for_update().get(tenant=tenant)
    _refuse_shortfalls(quota, request)
    return quota


def _inside_the_create(what: str) -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError(f"{what} must run inside the transaction creating the resource")


def _counters_add(quota: Quota, amounts: dict) -> None:
    """Add ``amounts`` (negative: give back) to the locked quota row's counters, in the
    database and on ``quota``: the row stays locked, so what it holds now is what it
    held plus them."""
    Quota.objects.filter(pk=quota.pk).update(
        **{f"used_{r}": F(f"used_{r}") + a for r, a in amounts.items()},
        resource_version=F("resource_version") + 1,
        updated=timezone.now(),
    )
    for resource, amount in amounts.items():
        setattr(quota, f"used_{resource}", quota.used(resource) + amount)
    quota.resource_version += 1


def _counters_add_if_fits(tenant: Tenant, amounts: dict) -> Quota | None:
    """Add ``amounts`` to the tenant's counters in one statement when every one of them
    fits, and return the row as that statement left it (locked by it until the
    transaction ends); None, having changed nothing, when one does not fit (the caller
    locks the row and names the shortfalls). A compare-and-set on the counters: the
    condition and the addition are one ``UPDATE``, its row read back by ``RETURNING``
    (``portal.sql.rows``). PostgreSQL only; elsewhere always None."""
    if connection.vendor != "postgresql":
        return None
    quote = connection.ops.quote_name
    column = {f.name: quote(f.column) for f in Quota._meta.concrete_fields}
    sets, fits, params = [], [], []
    for resource, amount in amounts.items():
        used = column[f"used_{resource}"]
        sets.append(f"{used} = {used} + %s")
        params.append(amount)
    sets += [f"{column['resource_version']} = {column['resource_version']} + 1"]
    sets += [f"{column['updated']} = %s"]
    params.append(timezone.now())
    params.append(tenant.pk)
    for resource, amount in amounts.items():
        if amount > 0:
            fits.append(f"{column[f'used_{resource}']} + %s <= {column[resource]}")
            params.append(amount)
    # Identifiers from the model's meta, quoted; every value a parameter.
    statement = (
        f"UPDATE {quote(Quota._meta.db_table)} SET {', '.join(sets)}"  # noqa: S608
        f" WHERE {' AND '.join([column['tenant'] + ' = %s', *fits])}"
        f" RETURNING {sql.columns(Quota)}"
    )
    found = sql.rows(Quota, statement, params)
    return found[0] if found else None


def quota_fits_sql(tenant: Tenant, **amounts) -> tuple[str, list]:
    """Whether ``amounts`` fit the tenant's quota now, as an SQL expression and its
    params (for a read that asks it on the way; NULL when the tenant has no quota
    row): what ``QuotaCharge.check`` decides, unlocked, without naming shortfalls."""
    request = _amounts(amounts)
    quote = connection.ops.quote_name
    column = {f.name: quote(f.column) for f in Quota._meta.concrete_fields}
    fits, params = [], []
    for resource, amount in request.items():
        if amount > 0:
            fits.append(f"{column[f'used_{resource}']} + %s <= {column[resource]}")
            params.append(amount)
    table = quote(Quota._meta.db_table)
    condition = " AND ".join(fits) or "1 = 1"
    # Identifiers from the model's meta, quoted; every value a parameter.
    statement = f"(SELECT {condition} FROM {table} WHERE {column['tenant']} = %s)"  # noqa: S608
    return statement, [*params, tenant.pk]


def _amounts(amounts: dict) -> dict:
    """``amounts`` (any of cpu, memory, storage, vms, pods, networks) as one request of
    every resource; ``ValidationError`` for a negative one."""
    request = {
        "cpu": Decimal(str(amounts.get("cpu", 0))),
        **{r: int(amounts.get(r, 0)) for r in QUOTA_RESOURCES if r != "cpu"},
    }
    for resource, amount in request.items():
        if amount < 0:
            raise ValidationError(
                gettext("%(resource)s cannot be negative.") % {"resource": resource},
                errors={resource: ["< 0"]},
            )
    return request


class QuotaCharge:
    """The reservations of one create, recorded as it goes and charged to the quota row
    at its end, so that the row is locked for the transaction's last statements only.

    ``quota_reserve`` locks the tenant's quota row with its first statement and the row
    stays locked until the transaction ends: every other create in the tenant waits for
    all the rest of this one (bench/README.md, ``vm_create``). Here ``reserve`` records a
    reservation and opens its usage interval without the lock; ``charge`` then locks the
    row, refuses naming every resource the sum does not fit in (nothing of the
    transaction is kept: the caller's transaction rolls back), adds the sum to the
    counters and checks the alert levels; when the sum fits, the lock, the check and the
    addition are one statement. ``reserve`` takes refs made for the create's new
    objects (their uids), which no usage subject holds yet. ``check`` refuses early from
    an unlocked read, so a create that cannot fit does no work; the locked check in
    ``charge`` is the one that decides. ``lock`` takes the row's lock now instead (for a
    caller that must lock the quota before another row, in the order quota → host).

    Inside the caller's transaction: reservations recorded here and never charged would
    be wrong, so ``charge`` must run before it commits.
    """

    def __init__(self, tenant: Tenant):
        self.tenant = tenant
        self.reservations: list[Reservation] = []
        self.quota: Quota | None = None

    def check(self, **amounts) -> None:
        """Refuse now, from an unlocked read, when ``amounts`` do not fit."""
        quota = sql.first(Quota, "tenant_id = %s", [self.tenant.pk])
        if quota is None:
            raise Quota.DoesNotExist(f"{self.tenant} has no quota row")
        _refuse_shortfalls(quota, _amounts(amounts))

    def lock(self, **amounts) -> Quota:
        """Lock the quota row now and refuse when ``amounts`` do not fit (``quota_check``)."""
        self.quota = quota_check(tenant=self.tenant, **amounts)
        return self.quota

    def reserve(
        self,
        *,
        ref: str,
        kind: str,
        object_id: str,
        name: str = "",
        labels: dict | None = None,
        **amounts,
    ) -> Reservation:
        """Record a reservation for the create (in its ``portal.sql.batch`` when it has
        one: written with its other rows, no key until then)."""
        _inside_the_create("QuotaCharge")
        reservation = sql.insert_later(
            Reservation(
                tenant=self.tenant, ref=ref, kind=kind, object_id=object_id, **_amounts(amounts)
            )
        )
        self.reservations.append(reservation)
        _ledger_changed(
            reservation, opened=True, name=name, labels=labels, charged=False, new_ref=True
        )
        return reservation

    def charge(self) -> Quota:
        """Lock the row (unless ``lock`` did), refuse or add every reservation's amounts."""
        _inside_the_create("QuotaCharge")
        request = _amounts(
            {r: sum(getattr(x, r) for x in self.reservations) for r in QUOTA_RESOURCES}
        )
        # Unless ``lock`` holds the row: one statement when everything fits; the row
        # locked and read to name the shortfalls when something does not.
        quota = None if self.quota else _counters_add_if_fits(self.tenant, request)
        if quota is None:
            quota = self.quota or Quota.objects.select_for_update().get(tenant=self.tenant)
            _refuse_shortfalls(quota, request)
            _counters_add(quota, request)
        self.quota = quota
        from portal import signals

        signals.quota_charged.send(sender=Quota, tenant=self.tenant, quota=quota, added=request)
        return quota


def quota_reserve(
    *,
    tenant: Tenant,
    ref: str,
    cpu: int | Decimal = 0,
    memory: int = 0,
    storage: int = 0,
    vms: int = 0,
    pods: int = 0,
    networks: int = 0,
    kind: str = ReservationKind.OTHER,
    object_id: str = "",
    locked: Quota | None = None,
    name: str = "",
    labels: dict | None = None,
) -> Reservation:
    """Charge a resource to the tenant's quota, or raise ``QuotaExceeded`` naming every
    resource the request does not fit in.

    Must run inside the caller's transaction (the one that creates the resource): it
    locks the quota row until that transaction ends (``locked``: the row the caller's
    ``quota_check`` locked in this transaction, not read again). Reserving a ``ref`` that
    already holds a live reservation returns that reservation unchanged. ``name`` and
    ``labels`` are the object's, for the usage meter, when the caller knows them already.
    """
    _inside_the_create("quota_reserve")
    request = _amounts(
        {
            "cpu": cpu,
            "memory": memory,
            "storage": storage,
            "vms": vms,
            "pods": pods,
            "networks": networks,
        }
    )
    if locked is not None and locked.tenant_id == tenant.pk:
        quota = locked
    else:
        quota = Quota.objects.select_for_update().get(tenant=tenant)
    existing = Reservation.objects.filter(ref=ref, released__isnull=True).first()
    if existing is not None:
        return existing
    _refuse_shortfalls(quota, request)
    _counters_add(quota, request)
    reservation = sql.insert(
        Reservation(tenant=tenant, ref=ref, kind=kind, object_id=object_id, **request)
    )
    _ledger_changed(reservation, opened=True, quota=quota, name=name, labels=labels)
    return reservation


@transaction.atomic
def quota_release(ref: str) -> bool:
    """Give a reservation back. Idempotent: returns False when nothing was held."""
    found = Reservation.objects.filter(ref=ref, released__isnull=True).values("tenant_id").first()
    if found is None:
        return False
    # Lock order quota → reservation, the same as quota_reserve, so they cannot deadlock.
    quota = Quota.objects.select_for_update().get(tenant_id=found["tenant_id"])
    reservation = (
        Reservation.objects.select_for_update().filter(ref=ref, released__isnull=True).first()
    )
    if reservation is None:
        return False
    _counters_add(quota, {r: -getattr(reservation, r) for r in QUOTA_RESOURCES})
    reservation.released = timezone.now()
    reservation.save(update_fields=["released"])
    _ledger_changed(reservation, opened=False, quota=quota)
    return True


def _ledger_changed(
    reservation: Reservation,
    *,
    opened: bool,
    quota: Quota | None = None,
    name: str = "",
    labels: dict | None = None,
    charged: bool = True,
    new_ref: bool = False,
) -> None:
    """Tell the usage meter (``usage.receivers``) inside this transaction, so every
    resource kind that reserves quota is metered without code of its own. ``quota``: the
    locked row with its new counters, when at hand; ``name``/``labels``: the object's;
    ``charged`` False: the counters do not hold it yet (``QuotaCharge``); ``new_ref``:
    its ref was made for it (a new object's uid), nothing held it before."""
    from portal import signals

    signals.ledger_changed.send(
        sender=Reservation,
        reservation=reservation,
        opened=opened,
        quota=quota,
        name=name,
        labels=labels,
        charged=charged,
        new_ref=new_ref,
    )


# --- API tokens -----------------------------------------------------------------------
TOKEN_PREFIX = "iso"


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def token_create(*, user, name: str, expires: datetime | None = None) -> tuple[ApiToken, str]:
    """Create an API token. Returns the row and the full key, shown to the user once."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationError(
            gettext("Give the token a name."), errors={"name": [gettext("1 to 100 characters.")]}
        )
    if expires is not None and expires <= timezone.now():
        raise ValidationError(
            gettext("Expiry is in the past."), errors={"expires": [gettext("In the past.")]}
        )
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, key_id=key_id, key_hash=token_hash(secret), expires=expires
    )
    audit_record(actor=user, action="token.create", target=f"token/{key_id}", detail={"name": name})
    return token, f"{TOKEN_PREFIX}_{key_id}_{secret}"


@transaction.atomic
def token_revoke(*, user, key_id: str) -> ApiToken:
    """Revoke one of ``user``'s tokens."""
    token = ApiToken.objects.filter(user=user, key_id=key_id, revoked__isnull=True).first()
    if token is None:
        raise NotFound(gettext("No such token."))
    token.revoked = timezone.now()
    token.save(update_fields=["revoked"])
    audit_record(actor=user, action="token.revoke", target=f"token/{key_id}")
    return token


@transaction.atomic
def token_revoke_as_staff(*, actor, token: ApiToken) -> bool:
    """Revoke anyone's token (platform staff). A compare-and-set on ``revoked``: a token
    revoked already (by its owner, another admin) is left as it is and not audited;
    returns whether this call revoked it."""
    revoked = ApiToken.objects.filter(pk=token.pk, revoked__isnull=True).update(
        revoked=timezone.now()
    )
    if revoked:
        audit_record(
            actor=actor,
            action="token.revoke",
            target=f"token/{token.key_id}",
            detail={"owner": token.user.username, "by": "admin"},
        )
    return bool(revoked)


# --- User preferences -----------------------------------------------------------------
@transaction.atomic
def preference_set_confirmation(*, user, confirmation: str, ask: bool) -> UserPreference:
    """Ask ``user`` before ``confirmation``'s action again (``ask``), or stop asking.

    Only the skippable confirmations (``Confirmation``) may be turned off; the row is
    locked while it changes, so two tabs changing different ones keep both."""
    if confirmation not in Confirmation.values:
        raise ValidationError(
            gettext("Unknown confirmation %(confirmation)s.")
            % {"confirmation": repr(confirmation)},
            errors={
                "confirmation": [
                    gettext("Choose one of %(codes)s.") % {"codes": ", ".join(Confirmation.values)}
                ]
            },
        )
    UserPreference.objects.get_or_create(user=user)
    preference = UserPreference.objects.select_for_update().get(user=user)
    skipped = set(preference.skip_confirmations)
    before = confirmation not in skipped
    if ask:
        skipped.discard(confirmation)
    else:
        skipped.add(confirmation)
    if before != ask:
        preference.skip_confirmations = sorted(skipped)
        preference.save(update_fields=["skip_confirmations", "updated"])
        audit_record(
            actor=user,
            action="preference.set",
            target=f"user/{user.get_username()}",
            detail={"confirmation": confirmation, "ask": ask},
        )
    return preference


@transaction.atomic
def preference_set_theme(*, user, theme: str) -> UserPreference:
    """Show the portal to ``user`` in ``theme`` (``Theme``: auto, light or dark).

    An unknown theme is a ValidationError and changes nothing; the row is locked while it
    changes, as for the confirmations."""
    if theme not in Theme.values:
        raise ValidationError(
            gettext("Unknown theme %(theme)s.") % {"theme": repr(theme)},
            errors={
                "theme": [gettext("Choose one of %(codes)s.") % {"codes": ", ".join(Theme.values)}]
            },
        )
    return _preference_set(user=user, field="theme", value=theme)


def _preference_set(*, user, field: str, value: str) -> UserPreference:
    """Set one field of ``user``'s preferences under a row lock; audit a change."""
    UserPreference.objects.get_or_create(user=user)
    preference = UserPreference.objects.select_for_update().get(user=user)
    before = getattr(preference, field)
    if before != value:
        setattr(preference, field, value)
        preference.save(update_fields=[field, "updated"])
        audit_record(
            actor=user,
            action="preference.set",
            target=f"user/{user.get_username()}",
            detail={field: value, "was": before},
        )
    return preference


@transaction.atomic
def preference_set_language(*, user, language: str) -> UserPreference:
    """Show the portal to ``user`` in ``language`` (a code from ``settings.LANGUAGES``, or
    ``""`` to follow the browser's ``Accept-Language``).

    An unknown code is a ValidationError and changes nothing; the row is locked while it
    changes, as for the theme."""
    codes = [code for code, _name in settings.LANGUAGES]
    if language and language not in codes:
        raise ValidationError(
            gettext("Unknown language %(language)r.") % {"language": language},
            errors={
                "language": [gettext("Choose one of %(codes)s.") % {"codes": ", ".join(codes)}]
            },
        )
    return _preference_set(user=user, field="language", value=language)
