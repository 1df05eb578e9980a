"""The readiness sweep backs off for guests that stay not Ready.

A Running VM whose guest never reports (its image's banner never appears) used to be
probed at every sweep, every 10 s, for as long as it ran. Now: every sweep for its first
five minutes, then less and less often, down to once every five minutes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compute.choices import Phase
from compute.models import VirtualMachine
from compute.services import readiness
from compute.services import vms as vm_services

pytestmark = pytest.mark.libvirt_test_driver

PERIOD = 10.0


def running_not_ready(demo, name: str, *, waited: float, now, ready_changed_ago=None):
    """A VM Running for ``waited`` seconds at ``now`` whose guest has not reported."""
    vm = vm_services.vm_create(
        actor=demo.bob, tenant=demo.acme, name=name, image="tiny", vcpus=1, memory_mib=256
    )
    changed = now - timedelta(seconds=ready_changed_ago if ready_changed_ago else waited)
    VirtualMachine.objects.filter(pk=vm.pk).update(
        phase=Phase.RUNNING,
        ready="False",
        ready_reason="Booting",
        phase_changed=now - timedelta(seconds=waited),
        ready_changed=changed,
    )
    return vm


def probes_over(vm, *, start, seconds: float) -> int:
    """How many of the sweeps every ``PERIOD`` over ``seconds`` from ``start`` probe
    ``vm``."""
    count = 0
    for step in range(int(seconds // PERIOD)):
        moment = start + timedelta(seconds=step * PERIOD)
        count += vm.pk in readiness.sweep_due(now=moment, period=PERIOD)
    return count


def test_a_guest_not_ready_for_hours_is_probed_every_five_minutes_not_every_sweep(
    demo, make_host, tiny_image
):
    make_host()
    now = timezone.now()
    stuck = running_not_ready(demo, "stuck", waited=7200, now=now)
    # Half an hour of sweeps every 10 s: 180 sweeps, 6 probes (one per five minutes).
    assert probes_over(stuck, start=now, seconds=1800) == 6


def test_a_booting_guest_is_probed_at_every_sweep_and_then_less_often(demo, make_host, tiny_image):
    make_host()
    now = timezone.now()
    booting = running_not_ready(demo, "booting", waited=5, now=now)
    # Its first five minutes: every sweep.
    assert probes_over(booting, start=now, seconds=290) == 29
    # The next five: every other sweep; the five after that, every fourth.
    start = now + timedelta(seconds=295)
    assert probes_over(booting, start=start, seconds=300) == 15
    assert probes_over(booting, start=start + timedelta(seconds=300), seconds=600) == 15


def test_the_count_restarts_when_the_vm_runs_again_or_its_condition_changes(
    demo, make_host, tiny_image
):
    make_host()
    now = timezone.now()
    # Its host was unreachable for an hour (Ready Unknown since then) and has just come
    # back: Running again 20 s ago, so it is probed at every sweep.
    back = running_not_ready(demo, "back", waited=20, ready_changed_ago=3600, now=now)
    # Running for an hour, but its condition changed (a reboot) 30 s ago.
    rebooted = running_not_ready(demo, "rebooted", waited=30, ready_changed_ago=30, now=now)
    VirtualMachine.objects.filter(pk=rebooted.pk).update(
        phase_changed=now - timedelta(seconds=3600)
    )
    assert probes_over(back, start=now, seconds=100) == 10
    assert probes_over(rebooted, start=now, seconds=100) == 10


def test_ready_and_stopped_vms_are_never_due(demo, make_host, tiny_image):
    make_host()
    now = timezone.now()
    ready = running_not_ready(demo, "ready", waited=5, now=now)
    VirtualMachine.objects.filter(pk=ready.pk).update(ready="True")
    stopped = running_not_ready(demo, "stopped", waited=5, now=now)
    VirtualMachine.objects.filter(pk=stopped.pk).update(phase=Phase.STOPPED)
    assert readiness.sweep_due(now=now, period=PERIOD) == []


@pytest.mark.parametrize(
    ("waited", "interval"),
    [(0, 10), (299, 10), (300, 20), (599, 20), (600, 40), (1200, 80), (2400, 160), (4800, 300)],
)
def test_the_interval_doubles_with_the_time_waited(waited, interval):
    assert readiness.sweep_interval(waited, PERIOD) == interval


def test_a_sweep_slower_than_the_slowest_interval_probes_at_every_sweep():
    assert readiness.sweep_interval(86400, 600) == 600
