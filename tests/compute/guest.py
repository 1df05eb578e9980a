"""Drive the tiny guest from a test: type on its VGA console (virDomainSendKey, as a
person at the console would), read what it writes to its serial log.

The guest's tty1 shell runs what is typed; commands send their output to ``/dev/ttyS0``
(a file on the host). Typing before the shell is up is lost, so :meth:`Guest.until`
types a command again until its output shows. :meth:`Guest.load_cpu` starts a busy loop
in the guest (one, however often the command is typed) and :meth:`Guest.unload_cpu`
stops it: real CPU load for the autoscaler tests, seen by libvirt as the vCPU's time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tools.infra.image import type_keys

# What Guest.load_cpu types (bench/pools.py types it too): one busy loop however often
# it is typed, its pid in /tmp/busy, then the mark on the serial port.
LOAD_CPU = (
    "[ -e /tmp/busy ] || { while :; do :; done & echo $! > /tmp/busy; } ; "
    "echo BUSY-$((6*7)) > /dev/ttyS0"
)
LOAD_CPU_MARK = "BUSY-42"


class Guest:
    """One running guest: ``domain()`` finds its domain wherever it runs now."""

    def __init__(self, domain: Callable, serial_log: Path):
        self.domain = domain
        self.serial_log = Path(serial_log)

    def log(self) -> str:
        return self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""

    def type(self, text: str) -> None:
        type_keys(self.domain(), text)

    def until(self, command: str, expected: str, timeout: float = 300, every: float = 5) -> str:
        """Type ``command`` (again every ``every`` s) until ``expected`` appears in the
        serial log after the first try; returns the log from there. The timeout is
        generous: TCG guests crawl when the machine is busy, and this is no benchmark."""
        start = len(self.log())
        deadline = time.monotonic() + timeout
        while True:
            self.type(command + "\n")
            typed = time.monotonic()
            while time.monotonic() - typed < every:
                fresh = self.log()[start:]
                if expected in fresh:
                    return fresh
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the guest never printed {expected!r} for {command!r}; "
                        f"serial log since: {fresh[-800:]!r}"
                    )
                time.sleep(0.2)

    def disk(self, serial: str, timeout: float = 300) -> str:
        """The guest's name (``vdX``) of the disk whose serial is ``serial``, once the
        guest has probed it. Linux names virtio disks in the order it finds them, not
        after libvirt's target, so the serial is what says which disk is which. Until
        it shows, the serial log lists every disk with its serial (what a failure
        prints)."""
        try:
            log = self.until(
                'for d in /sys/block/vd*; do echo "disk=${d##*/}:$(cat $d/serial)." ; done '
                "> /dev/ttyS0",
                f":{serial}.",
                timeout=timeout,
            )
        except pytest.fail.Exception as failed:
            # What tells a disk the guest named otherwise (found at boot beside the
            # root disk, or after another boot) from one that never reached it.
            booted = f"the guest booted {self.boots()} time(s)"
            pytest.fail(f"{failed}\n{booted}; {self.disks_defined()}")
        return re.findall(rf"disk=(vd[a-z]+):{re.escape(serial)}\.", log)[-1]

    def boots(self) -> int:
        """How many times the guest's kernel started: its banner, once per boot (the
        ready banner shows twice in one boot)."""
        return self.log().count("Linux version ")

    def disks_defined(self) -> str:
        """The domain's disks as libvirt has them now: target, serial, PCI slot."""
        disks = []
        for disk in ElementTree.fromstring(self.domain().XMLDesc(0)).iter("disk"):
            target, address = disk.find("target"), disk.find("address")
            slot = address.get("slot") if address is not None else "?"
            disks.append(f"{target.get('dev')} serial={disk.findtext('serial')} slot={slot}")
        return "disks: " + ", ".join(disks)

    def load_cpu(self) -> None:
        """Start a shell busy loop in the background (unless one runs already: its pid
        is in ``/tmp/busy``); it keeps the guest's vCPU busy until :meth:`unload_cpu`."""
        self.until(LOAD_CPU, LOAD_CPU_MARK, timeout=120)

    def unload_cpu(self) -> None:
        """Stop the busy loop :meth:`load_cpu` started."""
        self.until(
            "[ -e /tmp/busy ] && kill $(cat /tmp/busy) ; rm -f /tmp/busy ; "
            "echo IDLE-$((6*7)) > /dev/ttyS0",
            "IDLE-42",
            timeout=120,
        )

    def never(self, command: str, unexpected: str, settle: float = 6) -> None:
        """Type ``command`` and check that ``unexpected`` does not show within ``settle`` s
        (its output is marked with an echo that follows it)."""
        mark = f"checked{int(time.monotonic() * 1000)}"
        start = len(self.log())
        self.until(f"{command} > /dev/ttyS0 ; echo {mark} > /dev/ttyS0", mark)
        assert unexpected not in self.log()[start:], self.log()[start:][-400:]
