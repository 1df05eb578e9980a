"""Template tags for compute panels shown on other apps' pages (the tenant overview,
the profile page's confirmation settings)."""

from __future__ import annotations

from functools import lru_cache

from django import template
from django.urls import reverse
from django.utils.html import conditional_escape, escape, format_html
from django.utils.safestring import mark_safe
from django.utils.timezone import template_localtime
from django.utils.translation import get_language, gettext

from compute import selectors
from monitoring import formats
from portal.texts import localize
from tenants import selectors as tenant_selectors

register = template.Library()

SUMMARY_ROWS = 5


@register.inclusion_tag("compute/_vm_summary.html", takes_context=True)
def vm_summary(context, tenant):
    """The tenant's VMs: how many per phase and the most recently created few."""
    request = context["request"]
    vms = selectors.vms_for_tenant(request.user, tenant)
    return {
        "request": request,
        "tenant": tenant,
        "counts": selectors.vm_phase_counts(request.user, tenant),
        "total": vms.count(),
        "recent": list(vms.order_by("-created", "-id")[:SUMMARY_ROWS]),
        "can_create": tenant_selectors.can(request.user, tenant, "vm.create"),
    }


def ready_display(phase: str, condition: dict) -> dict:
    """How the Ready condition reads next to the phase: "Ready" once the guest (or every
    pod) is up, "Booting…" while a running VM's guest is not yet, nothing otherwise (the
    phase says it). static/js/live.js (readyDisplay) words it the same way."""
    if condition["status"] == "True" and phase in ("Running", "Migrating"):
        return {"state": "ready", "label": gettext("Ready")}
    if phase == "Running":
        label = gettext("Rebooting…") if condition["reason"] == "Rebooting" else gettext("Booting…")
        return {"state": "waiting", "label": label}
    return {"state": "none", "label": ""}


@register.simple_tag
def ready_badge(obj) -> str:
    """The Ready badge of a VM or a workload; live.js redraws it from the resource
    state's conditions."""
    from compute.models import VirtualMachine
    from compute.services.readiness import ready_condition, workload_ready_condition

    if isinstance(obj, VirtualMachine):
        condition = ready_condition(obj)
    else:
        condition = workload_ready_condition(obj)
    return _ready_badge(
        get_language(), obj.phase, condition["status"], condition["reason"], condition["message"]
    )


# The badges and the size of a row depend on a few values and the reader's language
# (the first argument, the cache's key): a list of many VMs draws the same few over
# and over, so each is built once and kept (bench/pages.py).
BADGE_CACHE = 2048


@lru_cache(maxsize=BADGE_CACHE)
def _ready_badge(language: str | None, phase: str, status: str, reason: str, message: str) -> str:
    condition = {"status": status, "reason": reason, "message": message}
    display = ready_display(phase, condition)
    return format_html(
        '<span class="iso-ready" data-live-field="readyCondition" data-testid="ready" '
        'data-ready="{}" title="{}"{}>{}</span>',
        display["state"],
        condition["message"],
        "" if display["label"] else mark_safe(" hidden"),
        display["label"],
    )


@register.filter
def phase_label(phase: str) -> str:
    """A phase word in the reader's language (the value itself stays in ``data-phase``)."""
    from compute.choices import PHASE_LABELS

    return PHASE_LABELS.get(phase, phase)


@register.filter
def cpu(millicores: int) -> str:
    """Millicores as a Kubernetes quantity: 500 → 500m, 2000 → 2."""
    from compute.quantities import format_cpu

    return format_cpu(int(millicores))


@register.filter
def memory(size: int) -> str:
    """Bytes as a Kubernetes quantity: 268435456 → 256Mi."""
    from compute.quantities import format_memory

    return format_memory(int(size))


@register.inclusion_tag("compute/_workload_summary.html", takes_context=True)
def workload_summary(context, tenant):
    """The tenant's workloads: how many per phase, pods ready, the newest few."""
    request = context["request"]
    workloads = selectors.workloads_for_tenant(request.user, tenant)
    return {
        "request": request,
        "tenant": tenant,
        "counts": selectors.workload_phase_counts(request.user, tenant),
        "pods": selectors.workload_pod_totals(request.user, tenant),
        "total": workloads.count(),
        "recent": list(workloads.order_by("-created", "-id")[:SUMMARY_ROWS]),
        "can_create": tenant_selectors.can(request.user, tenant, "workload.create"),
    }


@register.inclusion_tag("compute/_dashboard_line.html", takes_context=True)
def compute_line(context, tenant):
    """One line for a dashboard card: the tenant's VMs and workloads side by side."""
    request = context["request"]
    return {
        "tenant": tenant,
        "vms": selectors.vms_for_tenant(request.user, tenant).count(),
        "vm_counts": selectors.vm_phase_counts(request.user, tenant),
        "workloads": selectors.workloads_for_tenant(request.user, tenant).count(),
        "workload_counts": selectors.workload_phase_counts(request.user, tenant),
        "pods": selectors.workload_pod_totals(request.user, tenant),
    }


@register.inclusion_tag("compute/_confirm_preferences.html", takes_context=True)
def confirm_preferences(context):
    """The profile page's switches: which destructive VM actions ask first."""
    from tenants.choices import Confirmation

    request = context["request"]
    skipped = tenant_selectors.confirmations_skipped(request.user)
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "confirmations": [
            {"value": value, "label": label, "ask": value not in skipped}
            for value, label in Confirmation.choices
        ],
    }


@register.filter
def sort_link(query, column: str) -> str:
    """The URL that sorts a list by ``column`` (compute.listing.ListQuery)."""
    return query.sort_link(column)


@register.filter
def aria_sort(query, column: str) -> str:
    """``ascending``, ``descending`` or ``none``: how the list is sorted by ``column``."""
    return query.aria_sort(column)


@register.filter
def page_window(page) -> list[tuple[int, str]]:
    """The numbered links of a list's pager (compute.listing.page_window)."""
    from compute.listing import page_window as window

    return window(page.number, page.paginator.num_pages)


@register.simple_tag
def page_link(query, number) -> str:
    """A pagination link that keeps the list's search, filters and sort."""
    return "?" + query.params(page=number)


# --- Row pieces rendered in Python -----------------------------------------------------
# The VM list draws up to 100 rows, each with a phase badge, a size, a Ready badge and
# several action forms; as template includes they were most of the page's time
# (bench/pages.py). The markup is built once here, for the list and the detail page.


@register.simple_tag
def phase_badge(phase: str, static: bool = False) -> str:
    """A phase badge; colour from data-phase (the value); the text is its label. Live
    ones (not ``static``) are rewritten by live.js."""
    return _phase_badge(get_language(), phase, bool(static))


@lru_cache(maxsize=BADGE_CACHE)
def _phase_badge(language: str | None, phase: str, static: bool) -> str:
    marks = 'data-testid="phase-count"' if static else 'data-live-field="phase" data-testid="phase"'
    return format_html(
        '<span class="iso-phase" data-phase="{}" {}>{}</span>',
        phase,
        mark_safe(marks),  # noqa: S308 - constant markup
        phase_label(phase),
    )


@register.simple_tag
def vm_size(vm) -> str:
    """vCPUs, memory (GiB when whole) and disk of a VM, with icons."""
    return _vm_size(get_language(), vm.vcpus, vm.memory_mib, vm.disk_gib)


@lru_cache(maxsize=BADGE_CACHE)
def _vm_size(language: str | None, vcpus: int, memory_mib: int, disk_gib: int) -> str:
    if memory_mib >= 1024 and memory_mib % 1024 == 0:
        memory_text = f"{memory_mib // 1024} {gettext('GiB')}"
    else:
        memory_text = gettext("%(memory_mib)s MiB") % {"memory_mib": memory_mib}
    disk = ""
    if disk_gib:
        disk = format_html(
            '<span title="{}"><i class="bi bi-hdd"></i> {}</span>',
            gettext("Disk"),
            gettext("%(disk_gib)s GiB") % {"disk_gib": disk_gib},
        )
    return format_html(
        '<span class="iso-size"><span title="{}"><i class="bi bi-cpu"></i> {}</span>'
        '<span title="{}"><i class="bi bi-memory"></i> {}</span>{}</span>',
        gettext("vCPUs"),
        gettext("%(vcpus)s vCPU") % {"vcpus": vcpus},
        gettext("Memory"),
        memory_text,
        disk,
    )


@register.simple_tag(takes_context=True)
def vm_actions(context, vm, buttons, compact: bool = False) -> str:
    """The action buttons of one VM: every action the role may take, hidden unless the
    phase allows it (live updates show and hide them). Destructive ones carry
    data-confirm: vms.js asks in a modal; without JS the server shows a confirmation
    page. Force-stop and reboot offer "Don't ask again" (data-confirm-skippable), a
    per-user preference.

    What does not depend on the VM (each action's button, the form's URL around the
    name, the hidden inputs) is built once per page render and kept in the render
    context, so a row costs little more than joining strings."""
    if not buttons:
        return ""
    parts = _action_parts(context, compact)
    name = escape(vm.name)
    forms = []
    for b in buttons:
        url_head, url_tail, button = parts[b["action"]]
        attributes = f' data-live-action="{b["action"]}"'
        if b["hidden"]:
            attributes += " hidden"
        if b["confirm"]:
            attributes += (
                f' data-confirm="{escape(b["confirm"])}" data-confirm-label="{escape(b["label"])}"'
            )
            if b["skippable"]:
                attributes += " data-confirm-skippable"
        forms.append(
            f'<form method="post" action="{url_head}{name}{url_tail}"{attributes}>'
            f"{parts['inputs']}{button}</form>"
        )
    return mark_safe(  # noqa: S308 - every value above is escaped or built by format_html
        '<div class="iso-actions" data-testid="vm-actions">' + "".join(forms) + "</div>"
    )


def _action_parts(context, compact: bool) -> dict:
    """Per render: for each VM action, the form URL split around the VM's name and the
    button's markup; and the hidden inputs (CSRF token, where to come back to)."""
    from compute.services import vms as vm_services

    key = ("compute_tags.vm_actions", bool(compact))
    parts = context.render_context.get(key)
    if parts is not None:
        return parts
    tenant = context["tenant"]
    parts = {
        "inputs": format_html(
            '<input type="hidden" name="csrfmiddlewaretoken" value="{}">'
            '<input type="hidden" name="next" value="{}">',
            str(context.get("csrf_token", "")),
            context["request"].get_full_path(),
        )
    }
    from compute.views import ACTION_LABELS, PRIMARY

    marker = "vm-name-placeholder"
    for action in vm_services.ACTIONS:
        label, icon, tone = ACTION_LABELS[action][:3]
        url = reverse("vm-action", args=[tenant.slug, marker, action])
        head, tail = url.split(marker)
        if compact and action not in PRIMARY:
            button = format_html(
                '<button type="submit" class="btn btn-sm btn-outline-{} iso-icon-btn" '
                'data-action="{}" aria-label="{}" title="{}">'
                '<i class="bi bi-{}" aria-hidden="true"></i></button>',
                tone,
                action,
                label,
                label,
                icon,
            )
        else:
            button = format_html(
                '<button type="submit" class="btn btn-sm btn-outline-{}" data-action="{}">'
                '<i class="bi bi-{}" aria-hidden="true"></i> {}</button>',
                tone,
                action,
                icon,
                label,
            )
        parts[action] = (head, tail, button)
    context.render_context[key] = parts
    return parts


# The list's row, one per VM: ``templates/compute/vm_list.html`` drew it with some twenty
# template nodes per row (two blocktranslates, three date filters, a URL reverse), ~0.6 ms
# a row, half the page at 50 rows (bench/pages.py). The same markup, line for line.
ROW = (
    '<tr data-live-kind="vm" data-live-name="{name}" data-vm="{name}">\n'
    "          {check}\n"
    '          <td class="text-nowrap"><a class="iso-vm-name" href="{url}">{name}</a></td>\n'
    "          <td>\n"
    "            {phase} {ready}\n"
    '            <div class="small text-body-secondary iso-vm-message mt-1" '
    'data-live-field="message" data-live-hide-empty title="{message}" {hidden}>{message}</div>\n'
    "          </td>\n"
    "          <td>{size}</td>\n"
    '          <td class="text-nowrap"><span title="{os}">{image}</span></td>\n'
    "          {host}\n"
    '          <td class="text-nowrap small text-body-secondary"><time data-ago '
    'datetime="{created_iso}" title="{created_title}">{ago}</time></td>\n'
    '          <td class="text-end">{actions}</td>\n'
    "        </tr>"
)


@register.simple_tag(takes_context=True)
def vm_row(context, vm) -> str:
    """One row of the VM list (``vm.buttons`` from the view): the tick box when the role
    may act on several VMs, name, phase and Ready badges, message, size, image, host (staff),
    created and the action buttons. What is the same for every row (the detail URL around
    the name, the translated words) is built once per render, as ``vm_actions`` does."""
    parts = _row_parts(context)
    name = escape(vm.name)
    created = template_localtime(vm.created, use_tz=True)
    message = conditional_escape(localize(vm.message))
    return mark_safe(  # noqa: S308 - every value is escaped or built by format_html
        ROW.format(
            name=name,
            check=parts["check"] % {"value": name, "label": parts["tick"] % {"name": name}}
            if parts["check"]
            else "",
            url=f"{parts['url_head']}{name}{parts['url_tail']}",
            phase=phase_badge(vm.phase),
            ready=ready_badge(vm),
            message=message,
            hidden="" if vm.message else "hidden",
            size=vm_size(vm),
            os=escape(vm.image.os_label),
            image=escape(vm.image),
            host=parts["host"] % {"host": escape(vm.host or "—")} if parts["host"] else "",
            created_iso=escape(created.isoformat()) if created else "",
            created_title=parts["created"]
            % {"created": created.strftime("%Y-%m-%d %H:%M:%S") if created else ""},
            ago=escape(formats.ago(vm.created)) if vm.created else "",
            actions=vm_actions(context, vm, vm.buttons, compact=True),
        )
    )


def _row_parts(context) -> dict:
    """Per render: the pieces of ``vm_row`` that do not depend on the VM."""
    key = "compute_tags.vm_row"
    parts = context.render_context.get(key)
    if parts is not None:
        return parts
    allowed = context.get("allowed") or {}
    marker = "vm-name-placeholder"
    url_head, url_tail = reverse("vm-detail", args=[context["tenant"].slug, marker]).split(marker)
    parts = {
        "url_head": escape(url_head),
        "url_tail": escape(url_tail),
        "check": (
            '<td class="iso-check"><input class="form-check-input" type="checkbox" '
            'name="obj" value="%(value)s" form="vm-bulk" aria-label="%(label)s"></td>'
            if allowed.get("vm_operate") or allowed.get("vm_delete")
            else ""
        ),
        "tick": gettext("Tick %(name)s"),
        "host": (
            '<td class="font-monospace small" data-testid="vm-host">%(host)s</td>'
            if context.get("show_host")
            else ""
        ),
        "created": gettext("%(created)s UTC"),
    }
    context.render_context[key] = parts
    return parts


@register.filter
def hidden_initial(field) -> str:
    """The hidden input carrying the value the page shows for ``field`` (a bound field
    whose form field has ``show_hidden_initial``: ``compute.pool_forms.EditMixin``);
    empty for other fields."""
    return field.as_hidden(only_initial=True) if field.field.show_hidden_initial else ""
