"""Forms for the VM pool pages. They parse input; ``compute.services.pools`` and
``compute.services.autoscalers`` decide validity."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from compute.choices import AutoscalerMetric, PoolStrategy, RestartPolicy, WarmMode
from compute.models import Image
from portal.exceptions import ApplicationError, Conflict, QuotaExceeded


class ServiceErrorsMixin:
    """Show a service refusal on the fields it names (the form as a whole otherwise)."""

    def add_service_error(self, error: ApplicationError) -> None:
        if isinstance(error, QuotaExceeded) or not error.errors:
            self.add_error(None, error.message)
            return
        for field, messages in error.errors.items():
            for message in messages:
                self.add_error(self.error_field(field), message)

    def error_field(self, field: str) -> str | None:
        """The form field a service error on ``field`` shows on (None: the form's)."""
        return field if field in self.fields else None


class EditMixin:
    """A form that changes an object others may change too (``compute.services.edits``).
    Each field of ``EDITED`` carries the value the page showed (Django's hidden
    ``initial-<name>`` input), so that :meth:`edits` sends the service only the fields
    the person changed, each with the value it was changed from. A post without those
    inputs (not made by the page) sends every field, as before."""

    EDITED: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.EDITED:
            self.fields[name].show_hidden_initial = True

    def edits(self) -> tuple[dict, dict]:
        """``(changes, expected)`` of a valid form: the changed fields' new values, and
        the values the page showed for them."""
        changes: dict = {}
        expected: dict = {}
        for name in self.EDITED:
            initial_name = self[name].html_initial_name
            if initial_name not in self.data:
                changes[name] = self.cleaned_data[name]
            elif name in self.changed_data:
                changes[name] = self.cleaned_data[name]
                try:
                    expected[name] = self.fields[name].to_python(self.data[initial_name])
                except forms.ValidationError:  # e.g. an image no longer offered
                    expected[name] = None
        return changes, expected

    def add_service_error(self, error: ApplicationError) -> None:
        if isinstance(error, Conflict) and error.errors:
            self.add_error(None, error.message)  # what happened; the fields say what
        super().add_service_error(error)


WARM_MODE_HELP = _(
    "Paused: booted, then suspended, so a scale-up is a resume, not a boot; a paused "
    "member is charged to the quota exactly as a running one."
)
STRATEGY_HELP = _(
    "Rolling replaces a few members at a time; recreate deletes every old member first "
    "(their quota comes back), then makes the new ones."
)


class PoolCreateForm(ServiceErrorsMixin, forms.Form):
    name = forms.CharField(
        max_length=200,  # the service enforces the DNS label (56); this only bounds input
        label=_("Name"),
        help_text=_("Lowercase letters, digits and hyphens; members are named <name>-<n>."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    replicas = forms.IntegerField(
        label=_("Replicas"),
        initial=2,
        help_text=_("How many member VMs (0-100). Beyond the quota, what fits is created."),
    )
    image = forms.ModelChoiceField(
        label=_("Image"),
        queryset=Image.objects.none(),
        empty_label=None,
    )
    vcpus = forms.IntegerField(
        label=_("vCPUs per member"),
        initial=1,
    )
    memory_mib = forms.IntegerField(
        label=_("Memory per member (MiB)"),
        initial=256,
    )
    disk_gib = forms.IntegerField(
        label=_("Disk per member (GiB)"),
        initial=0,
        help_text=_("0 for an image that boots without a disk."),
    )
    restart_policy = forms.ChoiceField(
        label=_("Restart policy"),
        choices=RestartPolicy.choices,
        initial=RestartPolicy.ON_FAILURE,
        help_text=_("Each member's; a member that fails is replaced by the pool."),
    )
    warm = forms.IntegerField(
        label=_("Warm members"),
        initial=0,
        required=False,
        help_text=_(
            "Members kept defined and stopped beyond the replicas: a scale-up starts them "
            "instead of provisioning. Each is charged to the quota like any VM."
        ),
    )
    warm_mode = forms.ChoiceField(
        label=_("Warm members kept"),
        choices=WarmMode.choices,
        initial=WarmMode.STOPPED,
        help_text=WARM_MODE_HELP,
    )
    strategy = forms.ChoiceField(
        label=_("Update strategy"),
        choices=PoolStrategy.choices,
        initial=PoolStrategy.ROLLING,
        help_text=STRATEGY_HELP,
    )

    def __init__(self, *args, images, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image"].queryset = images

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"].strip(),
            "replicas": data["replicas"],
            "warm": data["warm"] or 0,
            "warm_mode": data["warm_mode"],
            "strategy": data["strategy"],
            "image": data["image"],
            "vcpus": data["vcpus"],
            "memory_mib": data["memory_mib"],
            "disk_gib": data["disk_gib"],
            "restart_policy": data["restart_policy"],
        }


class PoolTemplateForm(EditMixin, ServiceErrorsMixin, forms.Form):
    """The pool's template and update settings; a changed template is rolled out. Only
    the fields changed on the page are sent (:class:`EditMixin`)."""

    image = forms.ModelChoiceField(
        label=_("Image"),
        queryset=Image.objects.none(),
        empty_label=None,
    )
    vcpus = forms.IntegerField(
        label=_("vCPUs per member"),
    )
    memory_mib = forms.IntegerField(
        label=_("Memory per member (MiB)"),
    )
    disk_gib = forms.IntegerField(
        label=_("Disk per member (GiB)"),
    )
    restart_policy = forms.ChoiceField(
        label=_("Restart policy"),
        choices=RestartPolicy.choices,
    )
    strategy = forms.ChoiceField(
        label=_("Update strategy"),
        choices=PoolStrategy.choices,
        help_text=STRATEGY_HELP,
    )
    max_unavailable = forms.IntegerField(
        label=_("Max unavailable"),
        help_text=_(
            "Members that may be down at once during an update; one extra member is "
            "made first when the quota has room (else 1 at a time goes first)."
        ),
    )
    warm = forms.IntegerField(
        label=_("Warm members"),
        help_text=_("Members kept ready beyond the replicas (charged to the quota)."),
    )
    warm_mode = forms.ChoiceField(
        label=_("Warm members kept"),
        choices=WarmMode.choices,
        help_text=WARM_MODE_HELP,
    )

    FIELDS = (
        "image",
        "vcpus",
        "memory_mib",
        "disk_gib",
        "restart_policy",
        "strategy",
        "max_unavailable",
        "warm",
        "warm_mode",
    )
    EDITED = FIELDS

    def __init__(self, *args, images, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["image"].queryset = images

    def service_kwargs(self) -> dict:
        changes, expected = self.edits()
        return {**changes, "expected": expected}


class AutoscalerForm(ServiceErrorsMixin, forms.Form):
    min_replicas = forms.IntegerField(
        label=_("Minimum"),
        initial=1,
        help_text=_("0 lets an idle pool or Deployment scale to zero."),
    )
    max_replicas = forms.IntegerField(
        label=_("Maximum"),
        initial=4,
    )
    metric = forms.ChoiceField(
        label=_("Metric"),
        choices=AutoscalerMetric.choices,
        initial=AutoscalerMetric.CPU,
    )
    target = forms.IntegerField(
        label=_("Target utilisation (%)"),
        initial=50,
    )
    scale_down_window_seconds = forms.IntegerField(
        label=_("Scale-down window (s)"),
        initial=300,
        help_text=_("Shrink only to the highest recommendation of this window."),
    )
    scale_up_pods = forms.IntegerField(
        label=_("Add at most (members per 15 s)"),
        initial=4,
    )
    scale_up_percent = forms.IntegerField(
        label=_("or (% per 15 s)"),
        initial=100,
    )
    scale_down_percent = forms.IntegerField(
        label=_("Remove at most (% per 15 s)"),
        initial=100,
    )

    def service_kwargs(self) -> dict:
        return dict(self.cleaned_data)


class AutoscalerPanelForm(EditMixin, AutoscalerForm):
    """The autoscaler panel of a pool's or a Deployment's page. ``autoscaler`` is the uid
    of the autoscaler the page shows (empty: none, and the form adds one); changing an
    autoscaler sends only the fields changed on the page (:class:`EditMixin`)."""

    autoscaler = forms.CharField(required=False, widget=forms.HiddenInput)

    EDITED = tuple(AutoscalerForm.base_fields)

    @classmethod
    def for_autoscaler(cls, autoscaler, data=None) -> AutoscalerPanelForm:
        """The panel's form showing ``autoscaler`` (or None: the form that adds one)."""
        if autoscaler is None:
            return cls(data, initial={"autoscaler": ""})
        initial = {field: getattr(autoscaler, field) for field in cls.EDITED}
        return cls(data, initial={**initial, "autoscaler": str(autoscaler.uid)})

    def shown(self) -> str | None:
        """The uid of the autoscaler the page showed ("" for none); None for a post that
        does not say (not made by the page)."""
        return self.data.get("autoscaler")

    def service_kwargs(self) -> dict:
        """Every setting: the panel adds an autoscaler."""
        return {field: self.cleaned_data[field] for field in self.EDITED}

    def change_kwargs(self) -> dict:
        """The settings changed on the page, with the values they had there."""
        changes, expected = self.edits()
        return {**changes, "expected": expected}


class AutoscalerCreateForm(AutoscalerForm):
    """The autoscalers page's form: the panel's fields, a target picked from the
    tenant's VM pools and Deployments, and an optional name. A target that has an
    autoscaler already is listed disabled; the service refuses it if sent anyway."""

    scale_target = forms.ChoiceField(
        label=_("Target"),
        help_text=_("The VM pool or Deployment to scale; one autoscaler per target."),
    )
    name = forms.CharField(
        max_length=200,  # the service enforces the DNS label; this only bounds input
        required=False,
        label=_("Name"),
        help_text=_("Lowercase letters, digits and hyphens; the target's name if empty."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    # The service names the target's field after its kind; the form has one picker.
    TARGET_ERRORS = ("pool", "workload", "scale_target")
    KINDS = {"VMPool": _("VM pools"), "Deployment": _("Deployments")}

    field_order = ["scale_target", "name"]

    def __init__(self, *args, targets, **kwargs):
        super().__init__(*args, **kwargs)
        self.targets = {target.value: target for target in targets}
        self.fields["scale_target"].choices = [
            (self.KINDS[kind], [(t.value, t.name) for t in targets if t.kind == kind])
            for kind in self.KINDS
        ]

    def groups(self) -> list[tuple[str, list]]:
        """The picker's option groups: (label, targets), empty groups left out."""
        return [
            (label, [t for t in self.targets.values() if t.kind == kind])
            for kind, label in self.KINDS.items()
            if any(t.kind == kind for t in self.targets.values())
        ]

    def error_field(self, field: str) -> str | None:
        return super().error_field("scale_target" if field in self.TARGET_ERRORS else field)

    def target(self):
        """The picked target (an ``AutoscalerTarget``)."""
        return self.targets[self.cleaned_data["scale_target"]]

    def service_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        data.pop("scale_target")
        data["name"] = data["name"].strip()
        return data
