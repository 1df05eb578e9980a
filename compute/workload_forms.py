"""Forms for the workload pages. They parse text into lists and maps;
``compute.services.workloads`` decides validity."""

from __future__ import annotations

import shlex

from django import forms
from django.utils.translation import gettext_lazy as _

from compute.choices import ServiceType, WorkloadKind
from portal.exceptions import ApplicationError, QuotaExceeded

# Which form field a quota refusal belongs to.
QUOTA_FIELDS = {"cpu": "cpu_request", "memory": "memory_request", "pods": "replicas"}


class WorkloadCreateForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=200,  # the service enforces the DNS label; this only bounds input
        help_text=_("Lowercase letters, digits and hyphens, starting with a letter, e.g. web."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    kind = forms.ChoiceField(
        label=_("Kind"),
        choices=WorkloadKind.choices,
        initial=WorkloadKind.DEPLOYMENT,
    )
    image = forms.CharField(
        label=_("Image"),
        max_length=300,
        help_text=_("[registry/]name[:tag][@digest], e.g. nginx:1.27"),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    replicas = forms.CharField(
        label=_("Replicas"),
        initial="1",
        required=False,
    )
    cpu_request = forms.CharField(
        label=_("CPU request"),
        initial="100m",
        required=False,
        help_text=_("Per pod, e.g. 250m or 0.5"),
    )
    memory_request = forms.CharField(
        label=_("Memory request"),
        initial="128Mi",
        required=False,
        help_text=_("Per pod, e.g. 128Mi or 1Gi"),
    )
    cpu_limit = forms.CharField(
        label=_("CPU limit"),
        required=False,
        help_text=_("Empty: the request"),
    )
    memory_limit = forms.CharField(
        label=_("Memory limit"),
        required=False,
        help_text=_("Empty: the request"),
    )
    command = forms.CharField(
        label=_("Command"),
        required=False,
        help_text=_('Overrides the image\'s entrypoint, shell-quoted, e.g. /bin/sh -c "sleep 1d"'),
    )
    args = forms.CharField(
        required=False,
        help_text=_("Arguments, shell-quoted"),
    )
    env = forms.CharField(
        label=_("Environment"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text=_("One NAME=value per line"),
    )
    ports = forms.CharField(
        required=False,
        help_text=_("Container ports, comma separated, e.g. 80, 8443"),
    )
    service_type = forms.ChoiceField(
        label=_("Service"),
        choices=ServiceType.choices,
        required=False,
    )
    volumes = forms.CharField(
        label=_("Volume claims"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text=_(
            "One volume:/mount/path per line (:ro at the end for read-only), "
            "e.g. data:/var/lib/data"
        ),
    )
    security_groups = forms.MultipleChoiceField(
        label=_("Security groups"),
        required=False,
        help_text=_("What may reach its pods; none chosen: the tenant's default group."),
    )

    def __init__(self, *args, groups=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["security_groups"].choices = [(g, g) for g in groups]

    def clean_command(self) -> list[str]:
        return self._split("command")

    def clean_args(self) -> list[str]:
        return self._split("args")

    def _split(self, field: str) -> list[str]:
        try:
            return shlex.split(self.cleaned_data.get(field) or "")
        except ValueError as error:
            raise forms.ValidationError(f"Cannot split it like a shell would: {error}.") from None

    def clean_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for number, line in enumerate((self.cleaned_data.get("env") or "").splitlines(), 1):
            if not line.strip():
                continue
            if "=" not in line:
                raise forms.ValidationError(f"Line {number}: write NAME=value.")
            name, value = line.split("=", 1)
            env[name.strip()] = value
        return env

    def clean_ports(self) -> list[str]:
        text = self.cleaned_data.get("ports") or ""
        return [part.strip() for part in text.replace(" ", ",").split(",") if part.strip()]

    def clean_volumes(self) -> list[dict]:
        mounts = []
        for number, line in enumerate((self.cleaned_data.get("volumes") or "").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.strip().split(":")
            read_only = len(parts) == 3 and parts[2] == "ro"
            if len(parts) not in (2, 3) or (len(parts) == 3 and not read_only):
                raise forms.ValidationError(
                    f"Line {number}: write volume:/path or volume:/path:ro."
                )
            mounts.append({"volume": parts[0], "mountPath": parts[1], "readOnly": read_only})
        return mounts

    def service_kwargs(self) -> dict:
        """The arguments for ``workload_create``."""
        data = self.cleaned_data
        return {
            "name": data["name"].strip(),
            "kind": data["kind"],
            "image": data["image"].strip(),
            "replicas": data["replicas"] or ("1" if data["kind"] == WorkloadKind.POD else ""),
            "cpu_request": data["cpu_request"],
            "memory_request": data["memory_request"],
            "cpu_limit": data["cpu_limit"] or None,
            "memory_limit": data["memory_limit"] or None,
            "command": data["command"],
            "args": data["args"],
            "env": data["env"],
            "ports": data["ports"],
            "service_type": data["service_type"] or "",
            "volumes": data["volumes"],
            "security_groups": data["security_groups"],
        }

    def add_service_error(self, error: ApplicationError) -> None:
        """Show a service refusal on the fields it is about."""
        if isinstance(error, QuotaExceeded):
            for shortfall in error.shortfalls:
                self.add_error(QUOTA_FIELDS.get(shortfall.resource), shortfall.message)
            return
        if not error.errors:
            self.add_error(None, error.message)
            return
        for field, messages in error.errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)


class ScaleForm(forms.Form):
    replicas = forms.IntegerField(min_value=0)
