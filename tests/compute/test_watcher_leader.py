"""Two ``manage.py watch_kubernetes`` may run side by side: only the holder of the Redis
lease watches (scans the clusters); when it dies, the other takes over within a lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import postgres_only, wait_for
from tests.portal.test_web_tier import database_url_here

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
SCANNING = "no enabled Kubernetes cluster; waiting"  # what a watcher prints when it scans


class Watcher:
    def __init__(self) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log")  # noqa: SIM115
        env = {
            **os.environ,
            "DATABASE_URL": database_url_here(),
            "ISOTOPE_WATCHER_LEASE_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "watch_kubernetes", "--rescan", "0.5"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def scans(self) -> int:
        return Path(self.log.name).read_text().count(SCANNING)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        self.log.close()


def test_only_the_leader_watches_and_a_standby_takes_over_when_it_dies():
    postgres_only()
    first, second = Watcher(), Watcher()
    try:
        wait_for(lambda: first.scans() + second.scans() > 0, 60, message="a watcher leads")
        time.sleep(3)  # more than a lease: the other had every chance to take it
        leader, standby = (first, second) if first.scans() else (second, first)
        assert leader.scans() >= 3
        assert standby.scans() == 0

        leader.kill()  # no release: the standby waits for the lease to run out
        wait_for(lambda: standby.scans() > 0, 15, message="the standby takes over")
        assert "leading" in Path(standby.log.name).read_text()
    finally:
        first.kill(signal.SIGTERM)
        second.kill(signal.SIGTERM)
