"""VM metrics: raw samples every collection, 5-minute averages, the latest counters.

Rates are derived from counter deltas between two collections: ``VMCounters`` keeps
the last counters read per VM (one row, upserted each collection), which is also what
``/metrics`` exports as Prometheus counters. ``VMSample`` rows live
``ISOTOPE_METRICS_RAW_HOURS`` (24 h); ``VMRollup`` rows (5-minute averages of the
samples) live ``ISOTOPE_METRICS_ROLLUP_DAYS`` (30 days).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class MetricPoint(models.Model):
    """The measured rates at one time; shared by samples and rollups."""

    vm = models.ForeignKey(
        "compute.VirtualMachine",
        verbose_name=_("VM"),
        on_delete=models.CASCADE,
        related_name="+",
        # Each kind's index on (vm, time) serves what one on vm alone would.
        db_index=False,
    )
    time = models.DateTimeField(
        verbose_name=_("time"),
    )
    cpu_percent = models.FloatField(
        verbose_name=_("CPU %"),
        help_text=_("Busy share of the VM's vCPUs: 100 = every vCPU fully busy."),
    )
    memory_used_mib = models.FloatField(
        verbose_name=_("memory used (MiB)"),
    )
    disk_read_bps = models.FloatField(
        verbose_name=_("disk read (B/s)"),
    )
    disk_write_bps = models.FloatField(
        verbose_name=_("disk write (B/s)"),
    )
    net_rx_bps = models.FloatField(
        verbose_name=_("network received (B/s)"),
    )
    net_tx_bps = models.FloatField(
        verbose_name=_("network sent (B/s)"),
    )

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"vm {self.vm_id} at {self.time:%Y-%m-%d %H:%M:%S}"


class VMSample(MetricPoint):
    """One collection's rates for one VM (raw, 10-second resolution)."""

    class Meta:
        verbose_name = _("VM sample")
        verbose_name_plural = _("VM samples")
        indexes = [
            models.Index(fields=["vm", "time"], name="monitoring_sample_vm_time"),
            models.Index(fields=["time"], name="monitoring_sample_time"),
        ]


class VMRollup(MetricPoint):
    """The average of one VM's samples over a 5-minute bucket starting at ``time``."""

    samples = models.PositiveIntegerField(
        verbose_name=_("samples"),
    )

    class Meta:
        verbose_name = _("VM rollup")
        verbose_name_plural = _("VM rollups")
        constraints = [
            models.UniqueConstraint(
                fields=["vm", "time"],
                name="%(app_label)s_%(class)s_unique_vm_time",
                violation_error_message="One rollup per VM and bucket.",
            ),
        ]
        indexes = [models.Index(fields=["time"], name="monitoring_rollup_time")]


class VMCounters(models.Model):
    """The last counters read for one VM, and the rates derived at that read."""

    vm = models.OneToOneField(
        "compute.VirtualMachine",
        verbose_name=_("VM"),
        on_delete=models.CASCADE,
        related_name="+",
        primary_key=True,
    )
    host = models.ForeignKey(
        "compute.Host",
        verbose_name=_("host"),
        on_delete=models.SET_NULL,
        null=True,
        related_name="+",
    )
    time = models.DateTimeField(
        verbose_name=_("time"),
    )
    state = models.CharField(
        verbose_name=_("state"),
        max_length=16,
        help_text=_("The domain state at the read (running, shutoff, ...)."),
    )
    cpu_time_ns = models.PositiveBigIntegerField(
        verbose_name=_("CPU time (ns)"),
        default=0,
    )
    memory_used_kib = models.PositiveBigIntegerField(
        verbose_name=_("memory used (KiB)"),
        default=0,
    )
    disk_read_bytes = models.PositiveBigIntegerField(
        verbose_name=_("disk bytes read"),
        default=0,
    )
    disk_write_bytes = models.PositiveBigIntegerField(
        verbose_name=_("disk bytes written"),
        default=0,
    )
    net_rx_bytes = models.PositiveBigIntegerField(
        verbose_name=_("network bytes received"),
        default=0,
    )
    net_tx_bytes = models.PositiveBigIntegerField(
        verbose_name=_("network bytes sent"),
        default=0,
    )
    cpu_percent = models.FloatField(
        verbose_name=_("CPU %"),
        default=0,
    )
    disk_read_bps = models.FloatField(
        verbose_name=_("disk read (B/s)"),
        default=0,
    )
    disk_write_bps = models.FloatField(
        verbose_name=_("disk write (B/s)"),
        default=0,
    )
    net_rx_bps = models.FloatField(
        verbose_name=_("network received (B/s)"),
        default=0,
    )
    net_tx_bps = models.FloatField(
        verbose_name=_("network sent (B/s)"),
        default=0,
    )

    class Meta:
        verbose_name = _("VM counters")
        verbose_name_plural = _("VM counters")

    def __str__(self) -> str:
        return f"vm {self.vm_id} counters at {self.time:%Y-%m-%d %H:%M:%S}"
