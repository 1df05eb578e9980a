"""Shared Django admin pieces."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.core.exceptions import ImproperlyConfigured
from django.db import router, transaction
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext, gettext_lazy

from portal.exceptions import ApplicationError
from tenants.services import audit_record


class ChangedSinceShownMixin:
    """A form whose ``changed_data`` names what the person edited: each field is
    compared with the value the page showed, not with the row as it is when the form
    comes back. Django compares with the row re-read at POST time, so a value another
    writer stored after the page was opened (a drain's maintenance flag, a quota raised
    through the API) would count as "changed" back to the stale value shown.

    Each field renders a hidden copy of the value shown (Django's ``show_hidden_initial``)
    and is compared with it; a form sent back with errors carries the first page's
    copies on. A POST without them (a script, an older page) is compared with the row,
    as Django does. Secrets (password inputs) carry no copy."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if field.disabled or field.widget.is_hidden:
                continue  # not edited on the page
            if isinstance(field.widget, forms.PasswordInput):
                continue  # a secret the page must not carry
            field.show_hidden_initial = True
            key = self.add_initial_prefix(name)
            if self.is_bound and field.hidden_widget().value_omitted_from_data(
                self.data, self.files, key
            ):
                field.show_hidden_initial = False


class AuditedModelForm(ChangedSinceShownMixin, forms.ModelForm):
    """The form of an :class:`AuditedModelAdmin`. A field that is not a model field but
    sets model fields on the instance (in ``clean``) names them in ``instance_fields``,
    so that a change of it writes them."""

    instance_fields: dict[str, tuple[str, ...]] = {}


class AuditedModelAdmin(admin.ModelAdmin):
    """Platform objects edited in Django admin leave an ``AuditLog`` entry: who, which
    object, and which fields changed (names only: values may be secrets).

    A change writes only the fields the admin edited on the page (see
    :class:`ChangedSinceShownMixin`), with the row locked: what tasks, services or other
    admins wrote while the page was open is kept."""

    form = AuditedModelForm

    #: The noun in audit actions, e.g. ``host`` gives ``host.create`` / ``host.update``.
    audit_noun = ""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if not issubclass(form, AuditedModelForm):
            raise ImproperlyConfigured(
                f"{type(self).__name__}.form must be an AuditedModelForm: a plain form "
                "would write values the page showed over newer ones."
            )
        return form

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
        if change:
            self.save_edited(obj, form)
        else:
            super().save_model(request, obj, form, change)
        self._audit(request, obj, "update" if change else "create", list(form.changed_data))

    def save_edited(self, obj, form) -> None:
        """Write the model fields behind ``form.changed_data`` with the row locked, then
        read the rest of the row back into ``obj``: it holds what is stored, not what
        the page showed."""
        opts = obj._meta
        concrete = {f.name for f in opts.concrete_fields if not f.primary_key}
        related = {f.name for f in opts.many_to_many}  # saved by save_related
        fields: list[str] = []
        for name in form.changed_data:
            written = (name,) if name in concrete else form.instance_fields.get(name, ())
            if not written and name not in related:
                raise ImproperlyConfigured(
                    f"{type(form).__name__}.{name} is no model field: name the fields it "
                    "sets in instance_fields."
                )
            fields.extend(f for f in written if f not in fields)
        model = type(obj)
        with transaction.atomic(using=router.db_for_write(model)):
            if not model._base_manager.select_for_update().filter(pk=obj.pk).exists():
                raise Http404  # deleted since the form came back: not brought back
            if fields:
                obj.save(update_fields=fields)
            obj.refresh_from_db()

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

    def get_deleted_objects(self, objs, request):
        """Django's list of what goes with ``objs``, without its own refusal when one of
        them is a model staff may not delete on its own (a namespace, an API token): the
        service decides what may go along. Protected objects still refuse, as Django's."""
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

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
