"""Forms for the VM pool pages. They parse input; ``compute.services.pools`` and
``compute.services.autoscalers`` decide validity."""

from __future__ import annotations

from django import forms

from compute.choices import AutoscalerMetric, RestartPolicy
from compute.models import Image
from portal.exceptions import ApplicationError, QuotaExceeded


class ServiceErrorsMixin:
    """Show a service refusal on the fields it names (the form as a whole otherwise)."""

    def add_service_error(self, error: ApplicationError) -> None:
        if isinstance(error, QuotaExceeded) or not error.errors:
            self.add_error(None, error.message)
            return
        for field, messages in error.errors.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)


class PoolCreateForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(
        max_length=200,  # the service enforces the DNS label (56); this only bounds input
        help_text="Lowercase letters, digits and hyphens; members are named <name>-<n>.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    replicas = forms.IntegerField(
        initial=2,
        help_text="How many member VMs (0-100). Beyond the quota, what fits is created.",
    )
    image = forms.ModelChoiceField(
        queryset=Image.objects.none(),
        empty_label=None,
    )
    vcpus = forms.IntegerField(
        label="vCPUs per member",
        initial=1,
    )
    memory_mib = forms.IntegerField(
        label="Memory per member (MiB)",
        initial=256,
    )
    disk_gib = forms.IntegerField(
        label="Disk per member (GiB)",
        initial=0,
        help_text="0 for an image that boots without a disk.",
    )
    restart_policy = forms.ChoiceField(
        choices=RestartPolicy.choices,
        initial=RestartPolicy.ON_FAILURE,
        help_text="Each member's; a member that fails is replaced by the pool.",
    )

    def __init__(self, *args, images, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image"].queryset = images

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"].strip(),
            "replicas": data["replicas"],
            "image": data["image"],
            "vcpus": data["vcpus"],
            "memory_mib": data["memory_mib"],
            "disk_gib": data["disk_gib"],
            "restart_policy": data["restart_policy"],
        }


class AutoscalerForm(ServiceErrorsMixin, forms.Form):
    min_replicas = forms.IntegerField(
        label="Minimum",
        initial=1,
        help_text="0 lets an idle pool scale to zero.",
    )
    max_replicas = forms.IntegerField(
        label="Maximum",
        initial=4,
    )
    metric = forms.ChoiceField(
        choices=AutoscalerMetric.choices,
        initial=AutoscalerMetric.CPU,
    )
    target = forms.IntegerField(
        label="Target utilisation (%)",
        initial=50,
    )
    scale_down_window_seconds = forms.IntegerField(
        label="Scale-down window (s)",
        initial=300,
        help_text="Shrink only to the highest recommendation of this window.",
    )
    scale_up_pods = forms.IntegerField(
        label="Add at most (members per 15 s)",
        initial=4,
    )
    scale_up_percent = forms.IntegerField(
        label="or (% per 15 s)",
        initial=100,
    )
    scale_down_percent = forms.IntegerField(
        label="Remove at most (% per 15 s)",
        initial=100,
    )

    def service_kwargs(self) -> dict:
        return dict(self.cleaned_data)
