"""The one permission map: which role may do which action.

Views, the API and websocket consumers all ask :func:`role_allows`; nothing else decides
access. Actions are ``<noun>.<verb>`` strings; later apps add theirs here.
"""

from __future__ import annotations

from tenants.choices import Role

# What every member may do: read the tenant and everything in it.
VIEW_ACTIONS = frozenset(
    {
        "tenant.view",
        "quota.view",
        "member.view",
        "vm.view",
        "vm.console",
        "workload.view",
        "event.view",
        "migration.view",
        "image.view",
        "volume.view",
        "network.view",
        "securitygroup.view",
        "service.view",
        "usage.view",
        "vmpool.view",
        "backup.view",
    }
)

OPERATE_ACTIONS = frozenset(
    {
        "vm.create",
        "vm.operate",
        "vm.update",
        "vm.delete",
        "vm.console.input",
        "workload.create",
        "workload.operate",
        "workload.update",
        "workload.delete",
        "image.create",
        "volume.create",
        "volume.attach",
        "volume.resize",
        "volume.clone",
        "snapshot.create",
        "snapshot.restore",
        "network.create",
        "nic.attach",
        "nic.detach",
        "securitygroup.create",
        "securitygroup.update",
        "service.create",
        "service.update",
        "service.delete",
        "snapshot.schedule",
        "backup.create",
        "backup.restore",
        "vmpool.create",
        "vmpool.scale",
        "vmpool.update",
        "vmpool.delete",
        "autoscaler.manage",
    }
)

ADMIN_ACTIONS = frozenset(
    {
        "member.manage",
        "vm.migrate",
        "migration.cancel",
        "webhook.manage",
        "audit.view",
        "image.delete",
        "volume.delete",
        "quota.request",
        "snapshot.delete",
        "backup.delete",
        "network.delete",
        "securitygroup.delete",
    }
)

ROLE_ACTIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: VIEW_ACTIONS,
    Role.OPERATOR: VIEW_ACTIONS | OPERATE_ACTIONS,
    Role.ADMIN: VIEW_ACTIONS | OPERATE_ACTIONS | ADMIN_ACTIONS,
}

ALL_ACTIONS = frozenset().union(*ROLE_ACTIONS.values())

# Actions no tenant role grants: only platform staff (Django admin users).
STAFF_ACTIONS = frozenset({"quota.set", "tenant.create"})


def role_allows(role: str | None, action: str) -> bool:
    """True when ``role`` may perform ``action``. Unknown actions are refused."""
    if action not in ALL_ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return role is not None and action in ROLE_ACTIONS.get(role, frozenset())


def roles_allowing(action: str) -> list[str]:
    """The roles that may perform ``action`` (for queryset filters)."""
    if action not in ALL_ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return [role for role, actions in ROLE_ACTIONS.items() if action in actions]
