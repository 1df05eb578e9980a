"""Forms for the VM pages. They parse input; ``compute.services.vms`` decides validity."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from compute.choices import RestartPolicy
from compute.models import Flavor, Image
from portal.exceptions import ApplicationError, QuotaExceeded

CUSTOM = "custom"

# Which form field a quota refusal belongs to; ``None`` is the form as a whole.
QUOTA_FIELDS = {"cpu": "vcpus", "memory": "memory_mib", "storage": "disk_gib"}


class VMCreateForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=200,  # the service enforces the DNS label (63); this only bounds input
        help_text=_("Lowercase letters, digits and hyphens, e.g. web-1."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    image = forms.ModelChoiceField(
        label=_("Image"),
        queryset=Image.objects.none(),
        empty_label=None,
    )
    size = forms.ChoiceField(
        label=_("Size"),
        initial=CUSTOM,
    )
    vcpus = forms.IntegerField(
        label=_("vCPUs"),
        required=False,
        initial=1,
    )
    memory_mib = forms.IntegerField(
        label=_("Memory (MiB)"),
        required=False,
        initial=512,
    )
    disk_gib = forms.IntegerField(
        label=_("Disk (GiB)"),
        required=False,
        initial=0,
    )
    root_volume = forms.ChoiceField(
        label=_("Boot disk"),
        required=False,
        help_text=_(
            "A new disk of the chosen size (deleted with the VM), or one of the "
            "tenant's Ready volumes (kept when the VM is deleted)."
        ),
    )
    networks = forms.MultipleChoiceField(
        label=_("Network interfaces"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_(
            "A virtio interface on each network chosen (nic0, nic1, …); none: one "
            "user-mode interface that no other VM reaches."
        ),
    )
    start = forms.BooleanField(
        label=_("Start the VM once it is created"),
        required=False,
        initial=True,
    )
    restart_policy = forms.ChoiceField(
        label=_("Restart policy"),
        choices=RestartPolicy.choices,
        initial=RestartPolicy.ON_FAILURE,
        help_text=_("What the reconciler does when the VM stops outside the portal."),
    )

    def __init__(self, *args, images, flavors, volumes=(), networks=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image"].queryset = images
        # No network yet: the tenant's first VM makes "default" (NAT) with it.
        self.fields["networks"].choices = [(n.name, f"{n.name} ({n.cidr})") for n in networks] or [
            ("default", _("default (made with this VM)"))
        ]
        self.fields["root_volume"].choices = [
            ("", gettext("A new disk (the size's disk GiB)")),
            *(
                (
                    v.name,
                    gettext("Volume %(name)s (%(size)s GiB)")
                    % {"name": v.name, "size": v.size_gib},
                )
                for v in volumes
            ),
        ]
        self.flavors = {f.name: f for f in flavors}
        self.fields["size"].choices = [
            *((f.name, flavor_label(f)) for f in self.flavors.values()),
            (CUSTOM, gettext("Custom size…")),
        ]
        if self.flavors and not self.is_bound:
            self.initial.setdefault("size", next(iter(self.flavors)))

    @property
    def custom(self) -> bool:
        return self.cleaned_data.get("size") == CUSTOM

    def service_kwargs(self) -> dict:
        """The arguments for ``vm_create`` (a flavor, or the custom numbers)."""
        data = self.cleaned_data
        kwargs = {
            "name": data["name"].strip(),
            "image": data["image"],
            "start": data["start"],
            "restart_policy": data["restart_policy"],
        }
        if data.get("root_volume"):
            kwargs["root_volume"] = data["root_volume"]
        if data.get("networks"):
            kwargs["networks"] = list(data["networks"])
        if self.custom:
            kwargs.update(
                vcpus=data["vcpus"], memory_mib=data["memory_mib"], disk_gib=data["disk_gib"]
            )
        else:
            kwargs["flavor"] = self.flavors[data["size"]]
        return kwargs

    def add_service_error(self, error: ApplicationError) -> None:
        """Show a service refusal on the fields it is about."""
        if isinstance(error, QuotaExceeded):
            # Each resource over its limit on its own field (the size, for a flavor).
            for shortfall in error.shortfalls:
                field = QUOTA_FIELDS.get(shortfall.resource)
                if field and not self.custom:
                    field = "size"
                self.add_error(field, shortfall.message)
            return
        if not error.errors:
            self.add_error(None, error.message)
            return
        for field, messages in error.errors.items():
            target = field if field in self.fields else None
            if target in {"vcpus", "memory_mib", "disk_gib"} and not self.custom:
                target = "size"
            for message in messages:
                self.add_error(target, message)


def flavor_label(flavor: Flavor) -> str:
    memory = (
        f"{flavor.memory_mib // 1024} GiB"
        if flavor.memory_mib % 1024 == 0
        else (f"{flavor.memory_mib} MiB")
    )
    disk = gettext(", %(disk)s GiB disk") % {"disk": flavor.disk_gib} if flavor.disk_gib else ""
    return gettext("%(name)s — %(vcpus)s vCPU, %(memory)s%(disk)s") % {
        "name": flavor.name,
        "vcpus": flavor.vcpus,
        "memory": memory,
        "disk": disk,
    }


class ImageImportForm(forms.Form):
    """Import an image from a URL. Parses input; ``compute.services.images`` decides."""

    url = forms.CharField(
        label=_("URL"),
        max_length=2000,
        help_text=_("An http:// or https:// address of a qcow2 or raw image."),
        widget=forms.URLInput(attrs={"placeholder": "https://…/disk.qcow2", "spellcheck": "false"}),
    )
    name = forms.CharField(
        label=_("Name"),
        max_length=200,
        help_text=_("Lowercase letters, digits and hyphens."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    size_bytes = forms.IntegerField(
        label=_("Size in bytes"),
        required=False,
        help_text=_("Optional: reserves only this much storage; a larger download is refused."),
    )
    sha256 = forms.CharField(
        label=_("SHA-256"),
        required=False,
        max_length=200,
        help_text=_("Optional: the import fails unless the file matches."),
        widget=forms.TextInput(attrs={"spellcheck": "false", "class": "font-monospace"}),
    )

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "url": data["url"].strip(),
            "name": data["name"].strip(),
            "size_bytes": data["size_bytes"],
            "sha256": data["sha256"],
        }

    def add_service_error(self, error: ApplicationError) -> None:
        if isinstance(error, QuotaExceeded):
            self.add_error("size_bytes", error.message)
            return
        if not error.errors:
            self.add_error(None, error.message)
            return
        for field, messages in error.errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)


class LabelsForm(forms.Form):
    """A VM's or workload's labels as text, one ``key=value`` per line (the services
    check the keys and values as at create). ``shown`` carries the labels the page
    showed, so that only what was edited there is applied (``compute.services.edits``);
    a post without it replaces the labels, as before."""

    labels = forms.CharField(
        label=_("Labels"),
        required=False,
        max_length=20000,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "font-monospace"}),
        help_text=_("One key=value per line, e.g. app=web. Empty: no labels."),
    )

    shown = forms.CharField(
        required=False,
        max_length=20000,
        widget=forms.HiddenInput,
    )

    @classmethod
    def for_labels(cls, labels: dict | None) -> LabelsForm:
        """The form that shows ``labels`` (and says it did)."""
        text = labels_lines(labels)
        return cls(initial={"labels": text, "shown": text})

    def clean_shown(self) -> dict[str, str] | None:
        if "shown" not in self.data:
            return None
        # Written by the page (labels_lines): a line that is not key=value is no label.
        return {
            key.strip(): value.strip()
            for key, equals, value in (
                line.partition("=") for line in self.cleaned_data["shown"].splitlines()
            )
            if equals and key.strip()
        }

    def clean_labels(self) -> dict[str, str]:
        labels: dict[str, str] = {}
        for line in self.cleaned_data["labels"].splitlines():
            if not line.strip():
                continue
            key, equals, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not equals or not key:
                raise forms.ValidationError(
                    gettext("Write each label as key=value, e.g. app=web: %(line)s")
                    % {"line": line.strip()}
                )
            if key in labels:
                raise forms.ValidationError(
                    gettext("The label %(key)s is given twice.") % {"key": key}
                )
            labels[key] = value
        return labels


def labels_lines(labels: dict | None) -> str:
    """The text :class:`LabelsForm` shows for ``labels``: one ``key=value`` a line."""
    return "\n".join(f"{key}={value}" for key, value in sorted((labels or {}).items()))
