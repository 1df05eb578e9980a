"""Security groups: a tenant's allow rules for its VMs' interfaces.

A group holds rules (direction, protocol, port range, and the other side: an IPv4
CIDR or the members of a group). An interface is in one or more groups (the tenant's
``default`` group when none is chosen) and lets through what any of their rules
allows and the replies to it; everything else to or from it is dropped (DHCP from the
host always passes). ``default`` is made with the tenant's first interface: traffic
from its own members, and all egress.

On a libvirt host each group is an nwfilter ``isotope-sg-<uid>`` built from its rules
(a rule naming a group expands to that group's members: their MACs for ingress, their
known addresses for both directions), and each interface has its own filter
``isotope-nic-<uid>`` that includes its groups' filters and drops the rest; the
domain's ``<interface>`` holds a ``<filterref>`` to it. Filters are defined on a host
before a VM's domain is defined, started or migrated there (:func:`vm_filters_prepare`,
from the network preparation); a change of rules redefines the group's filter on the
hosts of its members (:func:`compute.tasks.networks.security_group_apply`), and
libvirt applies it to the running interfaces at once.

Every write locks the group's row and bumps its ``resource_version`` (the rules are
part of the group's spec: a rule added or removed is a new version).
"""

from __future__ import annotations

import ipaddress
import logging

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from compute.backends import FilterRule, FilterSpec
from compute.backends.containers import GroupPolicySpec, PolicyRule
from compute.choices import NicPhase, RuleDirection, RuleProtocol
from compute.models import NetworkInterface, SecurityGroup, SecurityGroupRule, VirtualMachine
from compute.texts import security_groups as group_texts
from monitoring.services import event_publish
from portal.exceptions import Conflict, NotFound, ValidationError
from tenants.models import Tenant
from tenants.services import audit_record, authorize

logger = logging.getLogger(__name__)

DEFAULT_NAME = "default"
DEFAULT_DESCRIPTION = "Traffic between its members, and all egress."
MAX_RULES = 50
MAX_GROUPS_PER_NIC = 5
ANYWHERE = "0.0.0.0/0"

GROUP_ACTIONS: dict[str, str] = {
    "update": "securitygroup.update",
    "delete": "securitygroup.delete",
}


def group_actions(group: SecurityGroup, role: str | None) -> list[str]:
    """The group buttons a user with ``role`` sees (the default group is kept)."""
    from tenants.permissions import role_allows

    return [
        name
        for name, permission in GROUP_ACTIONS.items()
        if role_allows(role, permission) and not (name == "delete" and group.is_default)
    ]


# --- Validation ------------------------------------------------------------------------
def _port(value, field: str, errors: dict) -> int | None:
    text = str(value if value is not None else "").strip()
    if not text:
        return None
    try:
        port = int(text)
    except ValueError:
        errors[field] = [gettext("%(port)s is not a port number (1–65535).") % {"port": repr(text)}]
        return None
    if not 1 <= port <= 65535:
        errors[field] = [gettext("%(port)s is not a port number (1–65535).") % {"port": port}]
        return None
    return port


def _remote_cidr(value, errors: dict) -> str:
    text = str(value or "").strip()
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        errors["remote_cidr"] = [
            gettext(
                "%(text)s is not an IPv4 network in CIDR form (e.g. 10.0.0.0/24, or "
                "%(anywhere)s for anywhere)."
            )
            % {"text": repr(text), "anywhere": ANYWHERE}
        ]
        return ""
    if "/" not in text:
        errors["remote_cidr"] = [
            gettext("Give the prefix length too, e.g. %(text)s/32.") % {"text": text}
        ]
        return ""
    if str(network) != text:
        errors["remote_cidr"] = [
            gettext("%(text)s has host bits set; the network is %(network)s.")
            % {"text": text, "network": network}
        ]
        return ""
    return text


def validate_rule(
    tenant: Tenant,
    *,
    direction,
    protocol,
    port_min=None,
    port_max=None,
    remote_cidr="",
    remote_group=None,
    group: SecurityGroup | None = None,
    group_name: str = "",
) -> dict:
    """The clean fields of one rule, or ``ValidationError`` naming each bad field.
    ``remote_group`` is a group name of the tenant (``group_name``, the group being
    made, may name itself)."""
    errors: dict[str, list[str]] = {}
    direction = str(direction or "").strip()
    if direction not in RuleDirection.values:
        errors["direction"] = [
            gettext("Choose one of %(choices)s.") % {"choices": ", ".join(RuleDirection.values)}
        ]
    protocol = str(protocol or "").strip()
    if protocol not in RuleProtocol.values:
        errors["protocol"] = [
            gettext("Choose one of %(choices)s.") % {"choices": ", ".join(RuleProtocol.values)}
        ]
    low = _port(port_min, "port_min", errors)
    high = _port(port_max, "port_max", errors)
    if protocol in (RuleProtocol.ICMP, RuleProtocol.ANY) and (low or high):
        errors["port_min"] = [
            gettext("Ports apply to TCP and UDP only, not %(protocol)s.") % {"protocol": protocol}
        ]
    elif high is not None and low is None and "port_min" not in errors:
        errors["port_min"] = [gettext("Give the range's first port too.")]
    elif low is not None and high is not None and high < low:
        errors["port_max"] = [
            gettext("The range ends (%(high)s) before it starts (%(low)s).")
            % {"high": high, "low": low}
        ]
    elif low is not None and high is None:
        high = low
    cidr_text = str(remote_cidr or "").strip()
    group_text = (
        remote_group.name if isinstance(remote_group, SecurityGroup) else str(remote_group or "")
    ).strip()
    found = None
    if cidr_text and group_text:
        errors["remote_cidr"] = [gettext("Give a CIDR or a group, not both.")]
    elif cidr_text:
        cidr_text = _remote_cidr(cidr_text, errors)
    elif group_text:
        if group is not None and group_text == group.name:
            found = group
        elif group_name and group_text == group_name:
            found = "self"
        else:
            found = SecurityGroup.objects.filter(tenant=tenant, name=group_text).first()
            if found is None:
                errors["remote_group"] = [
                    gettext("No security group named %(name)s.") % {"name": repr(group_text)}
                ]
    else:
        errors["remote_cidr"] = [
            gettext("Give the other side: a CIDR (%(anywhere)s for anywhere) or a security group.")
            % {"anywhere": ANYWHERE}
        ]
    if errors:
        raise ValidationError(gettext("The rule is not valid."), errors=errors)
    return {
        "direction": direction,
        "protocol": protocol,
        "port_min": low,
        "port_max": high,
        "remote_cidr": cidr_text if not found else "",
        "remote_group": found,
    }


def _validate_rules(tenant: Tenant, rules: list[dict], *, group=None, group_name="") -> list:
    """Each rule validated; errors keyed ``rules[i].field``."""
    if len(rules) > MAX_RULES:
        raise ValidationError(
            gettext("Too many rules."),
            errors={"rules": [gettext("At most %(max)s rules in a group.") % {"max": MAX_RULES}]},
        )
    clean, errors = [], {}
    for index, rule in enumerate(rules):
        try:
            clean.append(validate_rule(tenant, **rule, group=group, group_name=group_name))
        except ValidationError as error:
            for field, messages in (error.errors or {}).items():
                errors[f"rules[{index}].{field}"] = messages
    if errors:
        raise ValidationError(gettext("A rule is not valid."), errors=errors)
    return clean


def _check_name(name, errors: dict) -> str:
    from compute.services.networks import _check_name as check

    return check(name, errors)


def _check_description(description, errors: dict) -> str:
    text = str(description or "").strip()
    if len(text) > 200:
        errors["description"] = [gettext("At most %(max)s characters.") % {"max": 200}]
    return text


# --- Groups ----------------------------------------------------------------------------
def _make_rules(group: SecurityGroup, rules: list[dict]) -> None:
    for rule in rules:
        remote = rule["remote_group"]
        SecurityGroupRule.objects.create(
            group=group, **{**rule, "remote_group": group if remote == "self" else remote}
        )


def group_create(
    *, actor, tenant: Tenant, name: str, description: str = "", rules: list | None = None
) -> SecurityGroup:
    """Validate and record a group with its rules. Nothing is saved when a check fails."""
    authorize(
        actor=actor,
        tenant=tenant,
        permission="securitygroup.create",
        target=f"securitygroup/{name}",
    )
    errors: dict[str, list[str]] = {}
    name = _check_name(name, errors)
    description = _check_description(description, errors)
    if "name" not in errors and SecurityGroup.objects.filter(tenant=tenant, name=name).exists():
        errors["name"] = [
            gettext("A security group named %(name)s exists already in %(tenant)s.")
            % {"name": repr(name), "tenant": tenant.slug}
        ]
    if errors:
        raise ValidationError(gettext("The security group is not valid."), errors=errors)
    clean = _validate_rules(tenant, list(rules or []), group_name=name)
    try:
        with transaction.atomic():
            group = SecurityGroup.objects.create(
                tenant=tenant,
                name=name,
                description=description,
                created_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            _make_rules(group, clean)
            audit_record(
                actor=actor,
                action="securitygroup.create",
                tenant=tenant,
                target=f"securitygroup/{name}",
                detail={"rules": [rule_text(r) for r in group.rules.all()]},
            )
            _event(
                group,
                reason="Created",
                message=group_texts.GROUP_CREATED % {"group": name},
                new_object=True,
            )
            _policies_later(tenant)
    except IntegrityError:
        raise ValidationError(
            gettext("The security group is not valid."),
            errors={
                "name": [
                    gettext("A security group named %(name)s exists already.")
                    % {"name": repr(name)}
                ]
            },
        ) from None
    return group


def default_group(tenant: Tenant) -> SecurityGroup:
    """The tenant's ``default`` group, made (with its two rules) the first time."""
    found = SecurityGroup.objects.filter(tenant=tenant, name=DEFAULT_NAME).first()
    if found is not None:
        return found
    try:
        with transaction.atomic():
            group = SecurityGroup.objects.create(
                tenant=tenant, name=DEFAULT_NAME, description=DEFAULT_DESCRIPTION, is_default=True
            )
            SecurityGroupRule.objects.create(
                group=group,
                direction=RuleDirection.INGRESS,
                protocol=RuleProtocol.ANY,
                remote_group=group,
            )
            SecurityGroupRule.objects.create(
                group=group,
                direction=RuleDirection.EGRESS,
                protocol=RuleProtocol.ANY,
                remote_cidr=ANYWHERE,
            )
            _event(
                group, reason="Created", message=group_texts.DEFAULT_GROUP_CREATED, new_object=True
            )
            _policies_later(tenant)
            return group
    except IntegrityError:
        return SecurityGroup.objects.get(tenant=tenant, name=DEFAULT_NAME)


def _locked(group: SecurityGroup) -> SecurityGroup:
    found = (
        SecurityGroup.objects.select_for_update(of=("self",))
        .select_related("tenant")
        .filter(pk=group.pk)
        .first()
    )
    if found is None:
        raise NotFound(gettext("Security group %(name)s not found.") % {"name": repr(group.name)})
    return found


def _bump(group: SecurityGroup, **fields) -> SecurityGroup:
    SecurityGroup.objects.filter(pk=group.pk).update(
        **fields, updated=timezone.now(), resource_version=F("resource_version") + 1
    )
    group.refresh_from_db()
    return group


def group_update(
    *, actor, group: SecurityGroup, description=None, rules: list | None = None
) -> SecurityGroup:
    """Replace the group's description and/or its whole rule list (the API's PUT)."""
    tenant = group.tenant
    _authorize(actor, group, "securitygroup.update")
    errors: dict[str, list[str]] = {}
    if description is not None:
        description = _check_description(description, errors)
    if errors:
        raise ValidationError(gettext("The security group is not valid."), errors=errors)
    clean = _validate_rules(tenant, list(rules), group=group) if rules is not None else None
    with transaction.atomic():
        group = _locked(group)
        fields = {} if description is None else {"description": description}
        if clean is not None:
            group.rules.all().delete()
            _make_rules(group, clean)
        group = _bump(group, **fields)
        rules = [rule_text(r) for r in group.rules.all()]
        _audit(actor, group, "securitygroup.update", {"rules": rules})
        _event(
            group,
            reason="RulesChanged",
            message=group_texts.RULES_REPLACED
            % {"group": group.name, "count": group.rules.count()},
        )
        apply_later(group)
    return group


def rule_add(*, actor, group: SecurityGroup, **fields) -> SecurityGroupRule:
    """Add one rule (the rule editor); applied to running interfaces by the task."""
    tenant = group.tenant
    _authorize(actor, group, "securitygroup.update")
    clean = validate_rule(tenant, **fields, group=group)
    with transaction.atomic():
        group = _locked(group)
        if group.rules.count() >= MAX_RULES:
            raise Conflict(
                gettext("%(group)s has %(max)s rules already.")
                % {"group": group.name, "max": MAX_RULES},
                errors={
                    "rules": [gettext("At most %(max)s rules in a group.") % {"max": MAX_RULES}]
                },
            )
        rule = SecurityGroupRule.objects.create(group=group, **clean)
        group = _bump(group)
        _audit(actor, group, "securitygroup.update", {"added": rule_text(rule)})
        _event(
            group, reason="RuleAdded", message=group_texts.RULE_ADDED % {"rule": rule_text(rule)}
        )
        apply_later(group)
    return rule


def rule_remove(*, actor, group: SecurityGroup, rule_id: int) -> SecurityGroup:
    _authorize(actor, group, "securitygroup.update")
    with transaction.atomic():
        group = _locked(group)
        rule = group.rules.filter(pk=rule_id).select_related("remote_group").first()
        if rule is None:
            raise NotFound(
                gettext("%(group)s has no such rule (removed already?).") % {"group": group.name}
            )
        text = rule_text(rule)
        rule.delete()
        group = _bump(group)
        _audit(actor, group, "securitygroup.update", {"removed": text})
        _event(group, reason="RuleRemoved", message=group_texts.RULE_REMOVED % {"rule": text})
        apply_later(group)
    return group


def group_delete(*, actor, group: SecurityGroup) -> SecurityGroup:
    """Delete a group no interface is in and no other group's rule names. The default
    group is kept."""
    _authorize(actor, group, "securitygroup.delete")
    with transaction.atomic():
        group = _locked(group)
        if group.is_default:
            raise Conflict(
                gettext(
                    "The default security group is kept: interfaces that name no group are in it."
                ),
                errors={"name": [gettext("The default group.")]},
            )
        members = group.nics.count()
        if members:
            raise Conflict(
                gettext("%(group)s is used by %(count)s interface(s); remove them from it first.")
                % {"group": group.name, "count": members},
                errors={"name": [gettext("In use.")]},
            )
        workloads = sorted(group.workloads.values_list("name", flat=True))
        if workloads:
            raise Conflict(
                gettext(
                    "The pods of %(workloads)s are in %(group)s; move them to other groups first."
                )
                % {"workloads": ", ".join(workloads), "group": group.name},
                errors={"name": [gettext("In use.")]},
            )
        users = sorted(
            set(group.referencing_rules.exclude(group=group).values_list("group__name", flat=True))
        )
        if users:
            raise Conflict(
                gettext("Rules of %(groups)s name %(group)s; remove those rules first.")
                % {"groups": ", ".join(users), "group": group.name},
                errors={"name": [gettext("Named by other groups' rules.")]},
            )
        filter_name = group.filter_name
        group.rules.all().delete()
        group.delete()
        _audit(actor, group, "securitygroup.delete")
        _event(group, reason="Deleted", message=group_texts.GROUP_DELETED % {"group": group.name})
        transaction.on_commit(lambda: _enqueue("security_group_forget", filter_name))
        _policies_later(group.tenant)
    return group


# --- Interfaces ------------------------------------------------------------------------
def resolve_groups(tenant: Tenant, names, errors: dict, field: str) -> list[SecurityGroup]:
    """The tenant's groups named (none named: ``[]``, the caller uses the default)."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    wanted = [(n.name if isinstance(n, SecurityGroup) else str(n)).strip() for n in (names or [])]
    wanted = list(dict.fromkeys(w for w in wanted if w))
    if not wanted:
        return []
    if len(wanted) > MAX_GROUPS_PER_NIC:
        errors[field] = [gettext("At most %(max)s security groups.") % {"max": MAX_GROUPS_PER_NIC}]
        return []
    found = {g.name: g for g in SecurityGroup.objects.filter(tenant=tenant, name__in=wanted)}
    missing = [w for w in wanted if w not in found]
    if missing:
        errors[field] = [
            gettext("No security group named %(name)s.")
            % {"name": ", ".join(repr(m) for m in missing)}
        ]
        return []
    return [found[w] for w in wanted]


def nics_changed(groups) -> None:
    """Members joined or left ``groups``: the groups whose rules name them are built
    from other members now (inside the caller's transaction)."""
    ids = {g.pk for g in groups}
    for group in SecurityGroup.objects.filter(rules__remote_group_id__in=ids).distinct():
        apply_later(group)


# --- Filters ---------------------------------------------------------------------------
def _member_addresses(group: SecurityGroup) -> tuple[list[str], list[str]]:
    """The MACs and known IPv4 addresses of the group's interfaces (but those leaving)."""
    macs, addresses = [], set()
    for mac, fixed, held in (
        NetworkInterface.objects.filter(security_groups=group)
        .exclude(phase=NicPhase.DETACHING)
        .order_by("mac")
        .values_list("mac", "fixed_ip", "addresses")
    ):
        macs.append(mac)
        if fixed:
            addresses.add(str(fixed))
        for item in held or []:
            addresses.add(str(item).split("/")[0])
    return macs, sorted(addresses, key=ipaddress.IPv4Address)


def group_filter_spec(group: SecurityGroup) -> FilterSpec:
    """The group's nwfilter: one allow rule per rule and remote (a group as the other
    side expands to its members' MACs, for ingress, and known addresses)."""
    rules = []
    for rule in group.rules.select_related("remote_group").order_by("id"):
        direction = "in" if rule.direction == RuleDirection.INGRESS else "out"
        base = {
            "direction": direction,
            "protocol": rule.protocol,
            "port_min": rule.port_min,
            "port_max": rule.port_max,
        }
        if not rule.remote_group_id:
            rules.append(FilterRule(**base, remote_ip=rule.remote_cidr))
            continue
        macs, addresses = _member_addresses(rule.remote_group)
        if direction == "in":
            rules.extend(FilterRule(**base, remote_mac=mac) for mac in macs)
        rules.extend(FilterRule(**base, remote_ip=f"{ip}/32") for ip in addresses)
    return FilterSpec(name=group.filter_name, rules=tuple(rules))


def nic_filter_spec(nic: NetworkInterface) -> FilterSpec:
    groups = nic.security_groups.order_by("name")
    return FilterSpec(
        name=nic.filter_name, includes=tuple(g.filter_name for g in groups), drop_rest=True
    )


def vm_filters_prepare(vm: VirtualMachine, backend) -> None:
    """Define the filters of the VM's interfaces and of their groups on ``backend``'s
    host (before a define, start, hot-plug or incoming migration)."""
    if not backend.capabilities.get("filters"):
        return
    nics = list(
        NetworkInterface.objects.filter(vm=vm)
        .exclude(phase=NicPhase.DETACHING)
        .prefetch_related("security_groups")
    )
    groups = {g.pk: g for nic in nics for g in nic.security_groups.all()}
    for group in groups.values():
        backend.filter_define(group_filter_spec(group))
    for nic in nics:
        backend.filter_define(nic_filter_spec(nic))


def vm_filters_release(vm: VirtualMachine, backend) -> None:
    """The VM's domain is gone from ``backend``'s host: its interfaces' filters too
    (best effort: a filter left behind is only a name)."""
    from compute.backends import BackendError

    if backend is None or not backend.capabilities.get("filters"):
        return
    for nic in NetworkInterface.objects.filter(vm=vm):
        try:
            backend.filter_delete(nic.filter_name)
        except BackendError as error:
            logger.warning("filter %s left on %s: %s", nic.filter_name, vm.host, error)


def group_hosts(group: SecurityGroup):
    """The hosts running VMs with interfaces in the group."""
    from compute.models import Host

    return Host.objects.filter(
        vms__nics__security_groups=group, vms__nics__phase__in=(NicPhase.ATTACHED, NicPhase.PENDING)
    ).distinct()


def group_applied(group: SecurityGroup, hosts: int, failure: str = "") -> None:
    """The task's outcome: the message records a host's refusal (empty when applied)."""
    with transaction.atomic():
        current = SecurityGroup.objects.select_for_update().filter(pk=group.pk).first()
        if current is None:
            return
        if current.message != failure:
            current = _bump(current, message=failure[:1000])
        if failure:
            _event(current, type="Warning", reason="FilterFailed", message=failure)
        elif hosts:
            _event(
                current,
                reason="FilterApplied",
                message=group_texts.FILTER_APPLIED % {"hosts": hosts},
            )


# --- Presentation ----------------------------------------------------------------------
def rule_text(rule: SecurityGroupRule) -> str:
    ports = "" if rule.port_min is None else f" port {rule.ports_text}"
    side = "from" if rule.direction == RuleDirection.INGRESS else "to"
    return f"{rule.direction} {rule.protocol}{ports} {side} {rule.remote_text}"


def rule_representation(rule: SecurityGroupRule) -> dict:
    return {
        "id": rule.pk,
        "direction": rule.direction,
        "protocol": rule.protocol,
        "portMin": rule.port_min,
        "portMax": rule.port_max,
        "remoteCIDR": rule.remote_cidr or None,
        "remoteGroup": rule.remote_group.name if rule.remote_group_id else None,
    }


def _authorize(actor, group: SecurityGroup, permission: str) -> None:
    authorize(
        actor=actor,
        tenant=group.tenant,
        permission=permission,
        target=f"securitygroup/{group.name}",
    )


def _audit(actor, group: SecurityGroup, action: str, detail: dict | None = None) -> None:
    audit_record(
        actor=actor,
        action=action,
        tenant=group.tenant,
        target=f"securitygroup/{group.name}",
        detail=detail or {},
    )


def _event(
    group: SecurityGroup,
    *,
    reason: str,
    message: str,
    type: str = "Normal",
    new_object: bool = False,
) -> None:
    """``new_object``: its first event, in the transaction that makes it (see ``event_publish``)."""
    event_publish(
        new_object=new_object,
        tenant=group.tenant,
        kind="securitygroup",
        name=group.name,
        uid=str(group.uid),
        type=type,
        reason=reason,
        message=message,
    )


def apply_later(group: SecurityGroup) -> None:
    """After the commit: the group's filter on the hosts, its policy on the clusters."""
    pk = group.pk
    transaction.on_commit(lambda: _enqueue("security_group_apply", pk))
    _policies_later(group.tenant)


def _policies_later(tenant: Tenant) -> None:
    from compute.models import TenantNamespace

    if not TenantNamespace.objects.filter(tenant=tenant).exists():
        return  # no namespace yet: its provisioning applies the policies
    pk = tenant.pk

    def enqueue() -> None:
        from compute.tasks import kubernetes as tasks

        tasks.security_group_policies.delay(pk)

    transaction.on_commit(enqueue)


def group_policy_specs(tenant: Tenant) -> list[GroupPolicySpec]:
    """The tenant's groups as the cluster's NetworkPolicies take them."""
    return group_policy_specs_of([tenant.pk])[tenant.pk]


def group_policy_specs_of(tenant_ids: list[int]) -> dict[int, list[GroupPolicySpec]]:
    """``group_policy_specs`` of many tenants in three queries (a reconcile pass), by
    tenant id (an empty list for a tenant without groups)."""
    specs: dict[int, list[GroupPolicySpec]] = {tenant_id: [] for tenant_id in tenant_ids}
    groups = SecurityGroup.objects.filter(tenant_id__in=tenant_ids).prefetch_related(
        "rules__remote_group"
    )
    for group in groups.order_by("tenant_id", "name"):
        rules = tuple(
            PolicyRule(
                direction=rule.direction,
                protocol=rule.protocol,
                port_min=rule.port_min,
                port_max=rule.port_max,
                remote_cidr=rule.remote_cidr,
                remote_group=rule.remote_group.name if rule.remote_group_id else "",
            )
            for rule in sorted(group.rules.all(), key=lambda r: r.pk)
        )
        specs[group.tenant_id].append(GroupPolicySpec(name=group.name, rules=rules))
    return specs


def _enqueue(task_name: str, arg) -> None:
    from compute.tasks import networks as tasks

    getattr(tasks, task_name).delay(arg)
