"""Shared Django admin pieces."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext, gettext_lazy

from portal.exceptions import ApplicationError
from tenants.services import audit_record


class AuditedModelAdmin(admin.ModelAdmin):
    """Platform objects edited in Django admin leave an ``AuditLog`` entry: who, which
    object, and which fields changed (names only: values may be secrets)."""

    #: The noun in audit actions, e.g. ``host`` gives ``host.create`` / ``host.update``.
    audit_noun = ""

    def _audit(
        self, request, obj, verb: str, fields: list[str] | None = None, label: str = ""
    ) -> None:
        noun = self.audit_noun or obj._meta.model_name
        audit_record(
            actor=request.user,
            action=f"{noun}.{verb}",
            target=f"{noun}/{label or obj}",
            detail={"fields": sorted(fields)} if fields is not None else {},
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        self._audit(request, obj, "update" if change else "create", list(form.changed_data))

    def delete_model(self, request, obj):
        label = str(obj)  # before the row is gone
        super().delete_model(request, obj)
        self._audit(request, obj, "delete", label=label)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


class ServiceDeleteMixin:
    """Deleting in admin goes through a portal service (``delete_through``), which may
    refuse (the last admin, an image in use) or only start the deletion (files removed by
    a worker). Django's own "was deleted successfully" is then wrong: a refusal is shown
    as the service's message on the object's own page, a deletion started as the message
    ``delete_through`` returns, on the list. The "delete selected" action keeps Django's
    confirmation page, then deletes each object through the service and counts only
    those it deleted."""

    def delete_through(self, request, obj) -> str | None:
        """Delete ``obj`` through its service; return a message to show instead of
        Django's, or None to keep Django's. Raise ``ApplicationError`` to refuse."""
        raise NotImplementedError

    def delete_label(self, obj) -> str:
        return str(obj)

    def delete_model(self, request, obj) -> bool:
        """Delete ``obj`` through its service; False when the service refused."""
        try:
            said = self.delete_through(request, obj)
        except ApplicationError as error:
            self.message_user(request, f"{self.delete_label(obj)}: {error.message}", messages.ERROR)
            request._isotope_delete = "refused"
            return False
        if said:
            self.message_user(request, said, messages.SUCCESS)
            request._isotope_delete = "said"
        return True

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            description = gettext_lazy("Delete selected %(verbose_name_plural)s")
            actions["delete_selected"] = (delete_selected_through, "delete_selected", description)
        return actions

    def response_delete(self, request, obj_display, obj_id):
        outcome = getattr(request, "_isotope_delete", None)
        opts = self.model._meta
        if outcome == "refused":
            page = f"admin:{opts.app_label}_{opts.model_name}_change"
            return HttpResponseRedirect(reverse(page, args=[obj_id]))
        if outcome == "said":
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
            )
        return super().response_delete(request, obj_display, obj_id)


def delete_selected_through(modeladmin, request, queryset):
    """Django's "delete selected" with its confirmation page; once confirmed, each object
    goes through ``modeladmin.delete_model`` and the message counts what was deleted."""
    if not request.POST.get("post"):
        return django_delete_selected(modeladmin, request, queryset)
    deleted = sum(bool(modeladmin.delete_model(request, obj)) for obj in queryset)
    if deleted:
        modeladmin.message_user(
            request,
            gettext("%(count)d of %(total)d selected deleted or being deleted.")
            % {"count": deleted, "total": len(queryset)},
            messages.SUCCESS,
        )
    return None
