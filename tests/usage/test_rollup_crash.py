"""Chaos: the rollup's worker SIGKILLed in the middle of a day. Its transaction dies
with it; the next run redoes the work and every hour is counted once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tenants import services as tenant_services
from tenants.models import Reservation
from tests.conftest import postgres_only, wait_for
from usage import selectors
from usage.models import RollupState, UsageDaily
from usage.services.metering import floor_hour, usage_rollup

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def rollup_process(log: Path, **env_extra: str) -> subprocess.Popen:
    """``manage.py usage_rollup`` in its own process, on the test database; its log
    (stderr) goes to ``log``."""
    url = urlsplit(os.environ["DATABASE_URL"])
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(url._replace(path=f"/{connection.settings_dict['NAME']}")),
        "ISOTOPE_DEBUG": "1",
        **env_extra,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    with log.open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, "manage.py", "usage_rollup"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def test_a_rollup_killed_mid_day_loses_that_day_and_the_rerun_counts_it_once(demo, tmp_path):
    postgres_only()
    begin = floor_hour(timezone.now()) - timedelta(days=3, hours=5)
    with transaction.atomic():
        reservation = tenant_services.quota_reserve(
            tenant=demo.acme, ref="other:steady", cpu=2, vms=1
        )
    # Backdate the charge: it began 3 days and 5 hours ago (as if made then).
    Reservation.objects.filter(pk=reservation.pk).update(created=begin)
    from usage.models import UsageInterval

    UsageInterval.objects.filter(reservation_id=reservation.pk).update(start=begin)

    log = tmp_path / "rollup.log"
    victim = rollup_process(log, ISOTOPE_FAILPOINTS="usage.rollup.after_hour=sleep:120")
    try:
        # The first day's hourly rows are written (not committed) when it sleeps there,
        # which it logs (portal/failpoints.py) as it starts to.
        wait_for(
            lambda: (
                "failpoint usage.rollup.after_hour: sleeping" in log.read_text()
                or victim.poll() is not None
            ),
            timeout=60,
            interval=0.1,
            message="the rollup process never reached its failpoint",
        )
        assert victim.poll() is None, f"the rollup process ended before the kill: {log.read_text()}"
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
    assert not UsageDaily.objects.exists()
    assert RollupState.objects.filter(through__isnull=False).count() == 0

    wait_for(lambda: usage_rollup().hours > 0, timeout=30)
    usage_rollup()  # and again: nothing changes
    now = timezone.now()
    report = selectors.usage_report(
        demo.acme, start=(begin - timedelta(days=1)).date(), end=now.date(), now=now
    )
    held = Decimal((now - begin) / timedelta(hours=1))
    vm_hours = report.totals.hours["vm_hours"]
    assert abs(vm_hours - held) < Decimal("0.00001")  # every hour once, none twice
    assert abs(report.totals.hours["vcpu_hours"] - 2 * vm_hours) <= Decimal("0.000002")
