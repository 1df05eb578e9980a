"""tools.infra.libvirt: telling whose libvirt nodes answer, and whether they are stale.

The nodes belong to the machine, but their files live in the var/ of the checkout that
started them. These tests cover the decision from a daemon's command line, environment
and the filesystem; they never start, stop or ask the real nodes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.infra import libvirt

pytestmark = pytest.mark.unit


def node2_libvirtd_argv(infra: Path) -> list[str]:
    """The command line ``_node2_start_script`` gives node2's libvirtd."""
    return [
        "libvirtd",
        "-d",
        "--listen",
        "-f",
        str(infra / "node2" / "libvirtd.conf"),
        "-p",
        str(infra / "run" / "node2-libvirtd.pid"),
    ]


def make_checkout_state(root: Path) -> Path:
    """A checkout's ``var/infra`` with the directories ``up`` makes."""
    infra = root / "var" / "infra"
    for sub in ("run", "logs", "node2/etc/qemu"):
        (infra / sub).mkdir(parents=True)
    return infra


def test_node2_libvirtd_names_its_config_and_pid_file(tmp_path):
    infra = tmp_path / "a" / "var" / "infra"

    files = libvirt.checkout_files(node2_libvirtd_argv(infra), {})

    assert files == [infra / "node2" / "libvirtd.conf", infra / "run" / "node2-libvirtd.pid"]


def test_node1_daemon_is_known_by_its_log_file(tmp_path):
    log = tmp_path / "a" / "var" / "infra" / "logs" / "node1-libvirtd.log"

    files = libvirt.checkout_files(["libvirtd", "-d"], {"LIBVIRT_LOG_OUTPUTS": f"3:file:{log}"})

    assert files == [log]


def test_long_options_with_equals_are_read_too(tmp_path):
    pid = tmp_path / "var" / "infra" / "run" / "node2-virtlogd.pid"

    assert libvirt.checkout_files(["virtlogd", "-d", f"--pid-file={pid}"], {}) == [pid]


def test_a_daemon_no_checkout_started_belongs_to_nobody():
    argv = ["/usr/sbin/libvirtd", "--timeout", "120", "-f", "/etc/libvirt/libvirtd.conf"]
    environ = {"LIBVIRT_LOG_OUTPUTS": "3:journald 1:file:/var/log/libvirt/libvirtd.log"}

    found = libvirt.judge_files(libvirt.checkout_files(argv, environ))

    assert found == {"started_by": "", "ours": False, "gone": []}
    assert libvirt.stale_reason("node1", {**found, "replaced": []}) == ""


def test_nodes_of_a_removed_checkout_are_stale_and_the_reason_says_what_to_do(tmp_path):
    infra = make_checkout_state(tmp_path / "a")
    files = libvirt.checkout_files(node2_libvirtd_argv(infra), {})
    shutil.rmtree(tmp_path / "a")

    found = libvirt.judge_files(files, state=tmp_path / "b" / "var" / "infra")

    assert found["started_by"] == str(infra)
    assert not found["ours"]
    assert found["gone"] == [str(infra / "node2"), str(infra / "run")]
    reason = libvirt.stale_reason("node2", {**found, "replaced": []})
    assert str(infra) in reason
    assert "stale" in reason
    assert "sudo python3 -m tools.infra libvirt up" in reason


def test_nodes_of_another_live_checkout_are_used_as_they_are(tmp_path):
    infra = make_checkout_state(tmp_path / "a")

    found = libvirt.judge_files(
        libvirt.checkout_files(node2_libvirtd_argv(infra), {}),
        state=make_checkout_state(tmp_path / "b"),
    )

    assert found == {"started_by": str(infra), "ours": False, "gone": []}
    assert libvirt.stale_reason("node2", {**found, "replaced": []}) == ""


def test_nodes_this_checkout_started_are_its_own(tmp_path):
    infra = make_checkout_state(tmp_path / "a")

    found = libvirt.judge_files(libvirt.checkout_files(node2_libvirtd_argv(infra), {}), infra)

    assert found["ours"]
    assert found["gone"] == []


def test_a_bind_mount_of_a_directory_made_anew_is_replaced(tmp_path):
    etc = tmp_path / "var" / "infra" / "node2" / "etc" / "qemu"
    etc.mkdir(parents=True)
    seen_by_node2 = tmp_path / "node2-root" / "etc" / "libvirt" / "qemu"
    seen_by_node2.mkdir(parents=True)

    # What node2 sees is its own directory, not the checkout's any more.
    assert libvirt.mount_replaced(seen_by_node2, etc)
    assert not libvirt.mount_replaced(etc, etc)


def test_a_mounted_directory_that_was_deleted_is_replaced(tmp_path):
    # As node2 sees its /etc/libvirt/qemu once the checkout's var/ is removed: a directory
    # still open (here through a descriptor) but deleted.
    etc = tmp_path / "qemu"
    etc.mkdir()
    fd = os.open(etc, os.O_RDONLY)
    try:
        etc.rmdir()
        etc.mkdir()  # even made again at the same path, it is another directory

        assert libvirt.mount_replaced(Path(f"/proc/self/fd/{fd}"), etc)
    finally:
        os.close(fd)


def test_a_bind_mount_whose_source_is_gone_is_replaced(tmp_path):
    seen_by_node2 = tmp_path / "seen"
    seen_by_node2.mkdir()

    assert libvirt.mount_replaced(seen_by_node2, tmp_path / "gone")


def test_a_mount_that_cannot_be_looked_at_is_not_judged(tmp_path):
    assert not libvirt.mount_replaced(tmp_path / "unreadable", tmp_path / "gone")


def test_a_live_daemons_files_are_read_from_proc(tmp_path):
    # A stand-in process named like the daemon (a copy of sh): only its /proc entries
    # are read, nothing is sent to it.
    infra = tmp_path / "a" / "var" / "infra"
    program = tmp_path / "libvirtd"
    shutil.copy("/bin/sh", program)
    argv = node2_libvirtd_argv(infra)[1:]
    log = infra / "logs" / "node2-libvirtd.log"
    env = dict(os.environ, LIBVIRT_LOG_OUTPUTS=f"3:file:{log}")
    proc = subprocess.Popen([str(program), "-c", "sleep 30; :", *argv], env=env)
    try:
        deadline = time.monotonic() + 10
        while proc.pid not in libvirt._pids("libvirtd") and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has exec'd the stand-in
        assert proc.pid in libvirt._pids("libvirtd")
        assert libvirt.daemon_files(proc.pid) == [
            infra / "node2" / "libvirtd.conf",
            infra / "run" / "node2-libvirtd.pid",
            log,
        ]
    finally:
        proc.kill()
        proc.wait()


def test_the_daemon_listening_on_a_port_is_found_by_its_socket(tmp_path):
    # A stand-in named libvirtd (a link to Python, so /proc calls it that) listening on a
    # free loopback port, as node2's libvirtd listens on 16510.
    program = tmp_path / "libvirtd"
    program.symlink_to(sys.executable)
    script = (
        "import socket, sys, time\n"
        "s = socket.socket()\n"
        "s.bind(('127.0.0.1', 0))\n"
        "s.listen()\n"
        "print(s.getsockname()[1], flush=True)\n"
        "time.sleep(30)\n"
    )
    proc = subprocess.Popen([str(program), "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())

        assert libvirt._listener_pid(port) == proc.pid
    finally:
        proc.kill()
        proc.wait()
