"""Reads for tenants, with tenant isolation in one place.

Every tenant-owned queryset goes through :func:`restrict`, and every tenant lookup from
a URL through :func:`tenant_get`: a tenant the user is not a member of does not exist
for them (``NotFound``), a member whose role lacks the action gets ``PermissionDenied``.
Superusers act as admins of every tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import QuerySet
from django.utils.translation import gettext

from portal import sql
from portal.exceptions import NotFound, PermissionDenied
from tenants.choices import Role
from tenants.models import (
    QUOTA_LABELS,
    QUOTA_RESOURCES,
    AuditLog,
    Membership,
    Quota,
    Tenant,
    UserPreference,
)
from tenants.permissions import role_allows, roles_allowing

# "Not read yet" for a row a caller may pass in (the user's preference, the tenant).
UNREAD = object()


def role_of(user, tenant: Tenant) -> str | None:
    """The user's role in ``tenant`` (``admin`` for superusers), or None."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.is_superuser:
        return Role.ADMIN
    known = getattr(user, "_isotope_roles", {})
    if tenant.pk in known and getattr(user, "_isotope_memberships", None) is None:
        return known[tenant.pk]  # read with the tenant's row (tenant_get)
    membership = _memberships(user).get(tenant.pk)
    return membership[0] if membership else None


def _memberships(user) -> dict[int, tuple[str, str, str]]:
    """tenant id → (role, slug, name) of ``user``'s memberships: one statement, kept on
    the user object (a request's ``request.user`` is read anew for every request)."""
    cache = getattr(user, "_isotope_memberships", None)
    if cache is None:
        # In no order (Meta.ordering would join the user table to sort by username).
        rows = (
            Membership.objects.filter(user=user)
            .order_by()
            .values_list("tenant_id", "role", "tenant__slug", "tenant__name")
        )
        cache = {tenant_id: (role, slug, name) for tenant_id, role, slug, name in rows}
        user._isotope_memberships = cache
    return cache


def nav_tenants(user) -> list[Tenant]:
    """The tenants ``user`` may view, by slug, with their ``pk``, ``slug`` and ``name``
    only (the top bar's tenant switcher): from the memberships ``role_of`` read already,
    so the layout adds no statement; superusers (every tenant) are one read."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    if user.is_superuser:
        return list(Tenant.objects.only("slug", "name"))
    return sorted(
        (
            Tenant(pk=tenant_id, slug=slug, name=name)
            for tenant_id, (role, slug, name) in _memberships(user).items()
            if role_allows(role, "tenant.view")
        ),
        key=lambda tenant: tenant.slug,
    )


def can(user, tenant: Tenant, action: str) -> bool:
    """True when ``user`` may do ``action`` in ``tenant``."""
    return role_allows(role_of(user, tenant), action)


def tenants_for_user(user, action: str = "tenant.view") -> QuerySet[Tenant]:
    """The tenants in which ``user`` may do ``action``."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Tenant.objects.none()
    if user.is_superuser:
        return Tenant.objects.all()
    return Tenant.objects.filter(
        memberships__user=user, memberships__role__in=roles_allowing(action)
    ).distinct()


def restrict(user, action: str, queryset: QuerySet, *, tenant_field: str = "tenant") -> QuerySet:
    """Narrow a tenant-owned queryset to what ``user`` may ``action``."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return queryset.none()
    if user.is_superuser:
        return queryset
    return queryset.filter(
        **{
            f"{tenant_field}__memberships__user": user,
            f"{tenant_field}__memberships__role__in": roles_allowing(action),
        }
    )


def tenant_get(user, slug: str, action: str = "tenant.view", *, row=UNREAD) -> Tenant:
    """The tenant named ``slug`` if ``user`` is a member; 404 otherwise, 403 for the role.
    ``row``: the tenant row (or None: there is none) when this request read it already
    (``portal.identity.middleware``)."""
    tenant = _tenant_and_role(user, slug) if row is UNREAD else row
    role = role_of(user, tenant) if tenant else None
    if tenant is None or role is None:
        raise NotFound(gettext("Tenant %(tenant)s not found.") % {"tenant": repr(slug)})
    if not role_allows(role, action):
        raise PermissionDenied(
            gettext("Your role (%(role)s) does not allow %(permission)s in %(tenant)s.")
            % {"role": role, "permission": action, "tenant": slug}
        )
    return tenant


def memberships_of(tenant: Tenant) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username")
    )


def user_memberships(user) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__slug")


@dataclass(frozen=True)
class ResourceUsage:
    resource: str
    unit: str
    used: int | Decimal
    limit: int | Decimal

    @property
    def label(self) -> str:
        return QUOTA_LABELS[self.resource]

    @property
    def left(self) -> int | Decimal:
        return max(self.limit - self.used, 0)

    @property
    def percent(self) -> int:
        if not self.limit:
            return 100 if self.used else 0
        return min(int(self.used * 100 / self.limit), 100)

    @property
    def over(self) -> bool:
        return self.used > self.limit

    @property
    def level(self) -> str:
        """A severity for display: ok, warn (≥ 80 %), full (≥ 100 % or over)."""
        if self.over or (self.limit and self.used >= self.limit):
            return "full"
        return "warn" if self.percent >= 80 else "ok"


def quota_usage(tenant: Tenant) -> list[ResourceUsage]:
    """Used and limit per quota resource, in display order."""
    quota = Quota.objects.get(tenant=tenant)
    return [
        ResourceUsage(
            resource=r,
            unit=unit,
            used=_plain(quota.used(r)),
            limit=_plain(quota.limit(r)),
        )
        for r, unit in QUOTA_RESOURCES.items()
    ]


def _plain(value):
    """Decimal('4.000') → 4, Decimal('0.500') → Decimal('0.5'); ints unchanged."""
    if isinstance(value, Decimal):
        value = value.normalize()
        return int(value) if value == value.to_integral_value() else value
    return value


def audit_for_tenant(tenant: Tenant) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(tenant=tenant)


def _role_sql(tenant_id: str, user_id: str) -> str:
    """SQL for the role of the user whose id is ``user_id`` (SQL: a column or ``%s``) in
    the tenant whose id is ``tenant_id`` (SQL), NULL for a non-member."""
    memberships = Membership._meta.db_table
    return (
        f"(SELECT role FROM {memberships} WHERE {memberships}.tenant_id = {tenant_id} "  # noqa: S608
        f"AND {memberships}.user_id = {user_id})"
    )


def _role_keep(user, tenant_pk: int, role: str | None) -> None:
    """Note on ``user`` (read anew for each request) its role in a tenant, read with the
    tenant's row: ``role_of`` answers from it."""
    roles = getattr(user, "_isotope_roles", None)
    if roles is None:
        roles = user._isotope_roles = {}
    roles[tenant_pk] = role


# The alias and attributes under which a statement that reads a user's row (an API
# token's, with its user) also reads the tenant a request names and the user's role in it.
TENANT_ALONG = "isotope_tenant"
ROLE_ALONG = "isotope_tenant_role"


def tenant_along(slug: str, user_id_column: str) -> dict:
    """``portal.sql.select`` options that read, with each row, the tenant named ``slug``
    (attribute ``TENANT_ALONG``, None when there is none) and the role in it of the user
    whose id is in ``user_id_column`` (attribute ``ROLE_ALONG``, None for a non-member).
    ``tenant_along_keep`` then leaves them to ``tenant_get``: a request under
    ``/tenants/<slug>/`` with a token reads its token, user, tenant and role at once."""
    tenants = Tenant._meta.db_table
    return {
        "join": (f" LEFT OUTER JOIN {tenants} {TENANT_ALONG} ON {TENANT_ALONG}.slug = %s", [slug]),
        "attach": {TENANT_ALONG: Tenant},
        "annotate": {ROLE_ALONG: (_role_sql(f"{TENANT_ALONG}.id", user_id_column), [])},
    }


def tenant_along_keep(user, slug: str, row) -> None:
    """Keep on ``user`` (read anew for each request) the tenant named ``slug`` and the
    user's role in it that ``row`` was read with (``tenant_along``)."""
    tenant = getattr(row, TENANT_ALONG)
    user._isotope_tenant_along = (slug, tenant)
    if tenant is not None:
        _role_keep(user, tenant.pk, getattr(row, ROLE_ALONG))


def _tenant_and_role(user, slug: str) -> Tenant | None:
    """The tenant named ``slug``, read in one statement with ``user``'s membership role
    in it, which ``role_of`` then answers from (every API request under
    ``/tenants/<slug>/`` starts here: two reads became one, written out), or as read
    with the user's row (``tenant_along``)."""
    along = getattr(user, "_isotope_tenant_along", None)
    if along is not None and along[0] == slug:
        return along[1]
    if (
        not getattr(user, "is_authenticated", False)
        or user.is_superuser
        or getattr(user, "_isotope_memberships", None) is not None
    ):
        return sql.first(Tenant, "slug = %s", [slug])
    role = _role_sql(f"{Tenant._meta.db_table}.id", "%s")
    rows = sql.select(
        Tenant, "slug = %s", [slug], limit=1, annotate={"member_role": (role, [user.pk])}
    )
    if not rows:
        return None
    tenant = rows[0]
    _role_keep(user, tenant.pk, tenant.member_role)
    return tenant


def user_may(user_id: int, slug: str, action: str, *, second_factor: bool = True) -> bool:
    """May the user ``user_id``, read afresh (``is_active``, superuser and roles may have
    changed since they signed in), do ``action`` in the tenant named ``slug``? The rule
    is :func:`tenant_get`'s; the user's row, the tenant's id and the user's role in it
    come in one statement (a page's live socket asks on every subscribe: every page of
    a reconnect storm). ``second_factor``: whether the asking session signed in with
    one; without, a tenant that requires one (or the platform, of staff) refuses, as
    its pages do (``portal.identity.middleware``)."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    users, tenants = user_model._meta.db_table, Tenant._meta.db_table
    tenant_id = f"(SELECT id FROM {tenants} WHERE slug = %s)"  # noqa: S608
    role = _role_sql(tenant_id, f"{users}.id")
    annotate = {"tenant_pk": (tenant_id, [slug]), "tenant_role": (role, [slug])}
    if not second_factor:
        required = f"(SELECT require_2fa FROM {tenants} WHERE slug = %s)"  # noqa: S608
        annotate["tenant_2fa"] = (required, [slug])
    user = sql.first(user_model, f"{users}.id = %s", [user_id], annotate=annotate)
    if user is None or user.tenant_pk is None:
        return False
    if not second_factor and (
        user.tenant_2fa or (settings.ISOTOPE_REQUIRE_2FA_STAFF and user.is_staff)
    ):
        return False
    user._isotope_roles = {user.tenant_pk: user.tenant_role}
    try:
        tenant_get(user, slug, action, row=Tenant(pk=user.tenant_pk, slug=slug))
    except (NotFound, PermissionDenied):
        return False
    return True


def tenant_by_slug(slug: str) -> Tenant | None:
    """Unrestricted lookup, for audit records of refused requests only."""
    return Tenant.objects.filter(slug=slug).first()


def confirmations_skipped(user, preference=UNREAD) -> frozenset[str]:
    """The confirmations (``tenants.choices.Confirmation``) ``user`` asked not to see.
    ``preference``: the user's ``UserPreference`` (or None: they have none) when it was
    read already (``request.portal_preference``, portal.middleware)."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    if preference is not UNREAD:
        return frozenset((preference.skip_confirmations if preference else None) or ())
    skipped = (
        UserPreference.objects.filter(user=user)
        .values_list("skip_confirmations", flat=True)
        .first()
    )
    return frozenset(skipped or ())
