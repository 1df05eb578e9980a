"""Forms for the volume pages. They parse input; ``compute.services.volumes`` decides."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from compute.choices import StorageClass, VolumeFormat
from portal.exceptions import ApplicationError, QuotaExceeded


class ServiceErrorsMixin:
    """Put a service refusal on the fields it names (the form as a whole otherwise)."""

    quota_field = "size_gib"

    def add_service_error(self, error: ApplicationError) -> None:
        if isinstance(error, QuotaExceeded):
            self.add_error(self.quota_field, error.message)
            return
        if not error.errors:
            self.add_error(None, error.message)
            return
        for field, messages in error.errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)


class VolumeCreateForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=200,  # the service enforces the DNS label (63)
        help_text=_("Lowercase letters, digits and hyphens, e.g. data-1."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    size_gib = forms.IntegerField(
        label=_("Size (GiB)"),
        initial=10,
        required=False,
    )
    storage_class = forms.ChoiceField(
        label=_("Storage class"),
        choices=StorageClass.choices,
        initial=StorageClass.LOCAL,
    )
    format = forms.ChoiceField(
        label=_("Format"),
        choices=[(VolumeFormat.QCOW2, _("qcow2 (thin)")), (VolumeFormat.RAW, "raw")],
        initial=VolumeFormat.QCOW2,
        required=False,
        help_text=_("For local volumes; Kubernetes claims hold a filesystem."),
    )
    image = forms.ChoiceField(
        label=_("Start from"),
        required=False,
        help_text=_("A blank volume, or a copy-on-write copy of a disk image."),
    )
    vm = forms.ChoiceField(
        label=_("Attach to"),
        required=False,
        help_text=_("Local volumes only: it is made on that VM's host and attached to it."),
    )

    def __init__(self, *args, images, vms, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image"].choices = [("", _("Blank")), *((i.name, str(i)) for i in images)]
        self.vms = {vm.name: vm for vm in vms}
        self.fields["vm"].choices = [("", _("None (attach later)")), *((n, n) for n in self.vms)]

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        local = data["storage_class"] == StorageClass.LOCAL
        return {
            "name": data["name"].strip(),
            "size_gib": data["size_gib"],
            "storage_class": data["storage_class"],
            "format": (data.get("format") or "") if local else "",
            "image": data.get("image") or None,
            "vm": self.vms.get(data.get("vm") or ""),
        }


class VolumeResizeForm(ServiceErrorsMixin, forms.Form):
    size_gib = forms.IntegerField(label=_("New size (GiB)"), required=False)


class VolumeAttachForm(ServiceErrorsMixin, forms.Form):
    """Attach from the volume's page (choose a VM) or the VM's page (choose a volume)."""

    quota_field = None
    vm = forms.CharField(required=False)
    volume = forms.CharField(required=False)
    device = forms.CharField(required=False, max_length=8)
