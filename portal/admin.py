"""Shared Django admin pieces."""

from __future__ import annotations

from django.contrib import admin

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
