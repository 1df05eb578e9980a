"""Two real libvirt/QEMU nodes on this one machine.

- **node1** is this machine's own ``virtlogd`` + ``libvirtd`` at ``qemu:///system``. If
  they already run they are used as they are (and never stopped by ``down``); otherwise
  ``up`` starts them and ``down`` stops them again.
- **node2** is a second ``virtlogd`` + ``libvirtd`` in their own mount and UTS
  namespaces (``unshare --mount --uts --fork``): hostname ``node2``, tmpfs over
  ``/run``, ``/var/lib/libvirt``, ``/var/cache/libvirt`` and ``/var/log/libvirt``, its
  own ``/etc/libvirt/{qemu,storage,secrets}`` (bind-mounted from ``VAR/infra/node2/etc``
  so that node2's persistent domains neither clash with node1's nor vanish on restart),
  a distinct ``host_uuid``, listening on ``qemu+tcp://127.0.0.1:16510/system`` without
  authentication (loopback only). libvirt refuses to migrate between hosts with the same
  hostname or host UUID, hence the namespaces.

``up`` also decides the domain type for guests: ``qemu`` (TCG) unless a probe guest (the
tiny image of ``tools.infra.image``) really boots under KVM within a few seconds; the
probe's answer is cached per host kernel, CPU, QEMU and image. ``ISOTOPE_VIRT_TYPE``
(``qemu``/``kvm``) forces the answer.

Daemons run in their own sessions so that they outlive the shell that started them;
logs go to ``VAR/infra/logs/``, pid files to ``VAR/infra/run/``. Stdlib only.

The nodes are global to the machine, their files are not: a node that answers but that
another checkout started is used as it is while that checkout's files are there, and
stopped and started anew by ``up`` once they are gone (a stale node, see ``examine``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import signal
import subprocess
import time
import uuid
from pathlib import Path

from . import CACHE, STATE, read_state, write_state
from .image import ensure_packages, is_root, log, run

PART = "libvirt"
NODE1_URI = "qemu:///system"
NODE2_PORT = 16510
NODE2_URI = f"qemu+tcp://127.0.0.1:{NODE2_PORT}/system"
NODE2_HOSTNAME = "node2"
# Fixed so that node2 keeps its identity across restarts; differs from any real host.
NODE2_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "isotope:libvirt:node2"))
# Console (VNC) ports per node: both nodes listen on this machine's loopback, so their
# QEMUs must never be handed the same port. Isotope gives each guest a port from its
# host's range (the Host record, seeded from here); node2's libvirtd also allocates its
# own autoport ports (guests defined outside Isotope) from its range (qemu.conf).
NODE_VNC_PORTS = {"node1": (5900, 6399), "node2": (6400, 6899)}
# VXLAN tunnel endpoints per node: both nodes share this machine's network namespace
# and its loopback address, so each listens on a UDP port of its own (on separate
# machines every host would use its own address and VXLAN's port 4789).
NODE_TUNNELS = {"node1": ("127.0.0.1", 4789), "node2": ("127.0.0.1", 4790)}
PACKAGES = [
    "libvirt-daemon-system",
    "libvirt-daemon-driver-qemu",
    "libvirt-clients",
    "qemu-system-x86",
    "qemu-utils",
    "libvirt-dev",
    "pkg-config",
]
LOGS = STATE / "logs"
RUN = STATE / "run"
NODE2_DIR = STATE / "node2"
SERIAL_DIR = Path(os.environ.get("ISOTOPE_SERIAL_DIR", "/var/lib/isotope/serial"))
NODE1_PIDS = {"virtlogd": Path("/run/virtlogd.pid"), "libvirtd": Path("/run/libvirtd.pid")}
NODE2_PIDS = {"virtlogd": RUN / "node2-virtlogd.pid", "libvirtd": RUN / "node2-libvirtd.pid"}
OWNED = RUN / "owned.json"  # which node1 daemons this module started
TMPFS_DIRS = ("/run", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt")
ETC_DIRS = ("qemu", "storage", "secrets")
TEST_PREFIXES = ("isotope-smoke-", "isotope-probe-")
PROBE_CACHE = CACHE / "kvm-probe.json"
PROBE_SECONDS = float(os.environ.get("ISOTOPE_KVM_PROBE_SECONDS", "6"))
START_TIMEOUT = 30.0
# Each node's volume pool: a dir pool of this name at <storage root>/<node name>, the
# same as the portal's Host.storage_path default (settings ISOTOPE_STORAGE_ROOT,
# ISOTOPE_VOLUME_POOL), so that volumes of node1 and node2 are really apart.
STORAGE_ROOT = Path(os.environ.get("ISOTOPE_STORAGE_ROOT", "/var/lib/isotope/volumes"))
VOLUME_POOL = os.environ.get("ISOTOPE_VOLUME_POOL", "isotope-volumes")


# -- processes ------------------------------------------------------------------------


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _alive(pid: int, name: str = "") -> bool:
    """Is ``pid`` a live process (and, when ``name`` is given, running that program)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if name:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return False
        if comm != name:
            return False
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return False
        except (OSError, IndexError):
            pass
    return True


def _daemon_pid(path: Path, name: str) -> int:
    pid = _read_pid(path)
    return pid if _alive(pid, name) else 0


def _stop(pid: int, name: str, timeout: float = 10.0) -> None:
    if not _alive(pid, name):
        return
    log(f"stopping {name} (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, name):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def _daemon_env(logname: str) -> dict:
    LOGS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LC_ALL="C")
    env["LIBVIRT_LOG_OUTPUTS"] = f"3:file:{LOGS / logname}"
    return env


def _spawn(cmd: list[str], logname: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run a daemonizing command in a new session; its output goes to a log file."""
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / f"{logname}.out", "ab") as out:
        out.write(f"--- {time.ctime()}: {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_daemon_env(f"{logname}.log"),
            start_new_session=True,
            timeout=timeout,
            check=False,
        )
    return proc


def _tail(logname: str, lines: int = 8) -> str:
    text = ""
    for suffix in (".out", ".log"):
        try:
            text += (LOGS / f"{logname}{suffix}").read_text(errors="replace")
        except OSError:
            pass
    return " | ".join(text.strip().splitlines()[-lines:])


# -- virsh ----------------------------------------------------------------------------


def virsh(uri: str, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess:
    try:
        return run(["virsh", "-q", "-c", uri, *args], timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"virsh {args} timed out")


def _probe(uri: str) -> dict:
    res = virsh(uri, "hostname", timeout=5)
    ok = res.returncode == 0 and bool(res.stdout.strip())
    return {
        "reachable": ok,
        "hostname": res.stdout.strip() if ok else "",
        "error": "" if ok else (res.stderr.strip() or f"exit {res.returncode}")[-300:],
    }


def _wait(uri: str, timeout: float = START_TIMEOUT) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = _probe(uri)
        if info["reachable"] or time.monotonic() > deadline:
            return info
        time.sleep(0.3)


# -- node1 ----------------------------------------------------------------------------


def _owned() -> dict:
    try:
        return json.loads(OWNED.read_text())
    except (OSError, ValueError):
        return {}


def _start_node1() -> str:
    """Start this machine's virtlogd/libvirtd when they are not running (or stale)."""
    _replace_if_stale("node1")
    owned = _owned()
    for name, cmd in (("virtlogd", ["virtlogd", "-d"]), ("libvirtd", ["libvirtd", "-d"])):
        if _daemon_pid(NODE1_PIDS[name], name):
            continue
        if name == "libvirtd" and _probe(NODE1_URI)["reachable"]:
            continue  # e.g. socket-activated by systemd: not ours to manage
        log(f"node1: starting {name}")
        res = _spawn(cmd, f"node1-{name}")
        pid = 0
        deadline = time.monotonic() + 10
        while not pid and time.monotonic() < deadline:
            pid = _daemon_pid(NODE1_PIDS[name], name)
            time.sleep(0.1)
        if not pid:
            return f"node1 {name} did not start (exit {res.returncode}): {_tail(f'node1-{name}')}"
        owned[name] = pid
    RUN.mkdir(parents=True, exist_ok=True)
    OWNED.write_text(json.dumps(owned))
    return ""


# -- node2 ----------------------------------------------------------------------------


def _node2_conf() -> Path:
    NODE2_DIR.mkdir(parents=True, exist_ok=True)
    conf = NODE2_DIR / "libvirtd.conf"
    conf.write_text(
        "# node2 of the Isotope local infrastructure (tools/infra/libvirt.py)\n"
        "listen_tls = 0\n"
        "listen_tcp = 1\n"
        f'tcp_port = "{NODE2_PORT}"\n'
        'listen_addr = "127.0.0.1"\n'
        'auth_tcp = "none"\n'
        'auth_unix_rw = "none"\n'
        f'host_uuid = "{NODE2_UUID}"\n'
    )
    return conf


def _node2_qemu_conf() -> Path:
    """This machine's qemu.conf with node2's own VNC port range (bind-mounted over
    /etc/libvirt/qemu.conf in node2's namespace)."""
    NODE2_DIR.mkdir(parents=True, exist_ok=True)
    try:
        base = Path("/etc/libvirt/qemu.conf").read_text()
    except OSError:
        base = ""
    keys = ("remote_display_port_min", "remote_display_port_max")
    lines = [line for line in base.splitlines() if not line.strip().startswith(keys)]
    low, high = NODE_VNC_PORTS["node2"]
    lines += [
        "# node2 of the Isotope local infrastructure (tools/infra/libvirt.py): VNC ports",
        "# of its own, apart from node1's on the shared loopback",
        f"remote_display_port_min = {low}",
        f"remote_display_port_max = {high}",
    ]
    conf = NODE2_DIR / "qemu.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _dir_entries(top: str) -> list[tuple[str, int, int, int]]:
    """Directories under ``top`` (two levels) with mode/uid/gid, to recreate on tmpfs."""
    found = []
    base = Path(top)
    if top == "/run":
        return [("/run/libvirt", 0o755, 0, 0), ("/run/lock", 0o1777, 0, 0)]
    for path in [base, *base.glob("*"), *base.glob("*/*")]:
        try:
            st = path.lstat()
        except OSError:
            continue
        if path.name.startswith("domain-"):
            continue  # node1's per-domain runtime dirs
        if path.is_dir() and not path.is_symlink():
            found.append((str(path), st.st_mode & 0o7777, st.st_uid, st.st_gid))
    return found


def _node2_setup_script() -> str:
    """Shell run inside the new namespaces: hostname, private mounts."""
    lines = ["set -e", f"hostname {NODE2_HOSTNAME}", "mount --make-rprivate /"]
    for top in TMPFS_DIRS:
        entries = _dir_entries(top)
        lines.append(f"mount -t tmpfs -o mode=0755 isotope-node2 {top}")
        for path, mode, uid, gid in entries:
            q = shlex.quote(path)
            lines.append(f"mkdir -p {q} && chmod {mode:o} {q} && chown {uid}:{gid} {q}")
    for sub in ETC_DIRS:
        src = NODE2_DIR / "etc" / sub
        src.mkdir(parents=True, exist_ok=True)
        os.chmod(src, 0o700 if sub == "secrets" else 0o755)
        target = f"/etc/libvirt/{sub}"
        lines.append(f"mkdir -p {target} && mount --bind {shlex.quote(str(src))} {target}")
    conf = shlex.quote(str(_node2_qemu_conf()))
    lines.append(f"touch /etc/libvirt/qemu.conf && mount --bind {conf} /etc/libvirt/qemu.conf")
    return "\n".join(lines)


def _node2_start_script(names: list[str]) -> str:
    """Shell that starts the given node2 daemons (run inside node2's namespaces)."""
    conf = shlex.quote(str(_node2_conf()))
    pid = {n: shlex.quote(str(NODE2_PIDS[n])) for n in ("virtlogd", "libvirtd")}
    commands = {
        "virtlogd": f"virtlogd -d -p {pid['virtlogd']}",
        "libvirtd": f"libvirtd -d --listen -f {conf} -p {pid['libvirtd']}",
    }
    return "\n".join(["set -e", *(commands[n] for n in ("virtlogd", "libvirtd") if n in names)])


def _start_node2() -> str:
    _replace_if_stale("node2")
    RUN.mkdir(parents=True, exist_ok=True)
    pids = {name: _daemon_pid(path, name) for name, path in NODE2_PIDS.items()}
    if all(pids.values()):
        return ""
    holder = pids["libvirtd"] or pids["virtlogd"]
    if not holder and _probe(NODE2_URI)["reachable"]:
        log(f"node2: {NODE2_URI} already answers (started elsewhere): using it as it is")
        return ""
    if holder:
        log(f"node2: restarting dead daemons inside the namespace of pid {holder}")
        dead = [name for name, pid in pids.items() if not pid]
        script = _node2_start_script(dead)
        cmd = ["nsenter", "-t", str(holder), "-m", "-u", "sh", "-c", script]
    else:
        if not Path("/usr/bin/unshare").exists() and not _which("unshare"):
            return "unshare (util-linux) is missing: cannot create node2's namespaces"
        log("node2: new mount+UTS namespace, starting virtlogd and libvirtd")
        script = _node2_setup_script() + "\n" + _node2_start_script(list(NODE2_PIDS))
        cmd = [
            "unshare",
            "--mount",
            "--uts",
            "--fork",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ]
    res = _spawn(cmd, "node2-libvirtd")
    if res.returncode != 0:
        return f"node2 did not start (exit {res.returncode}): {_tail('node2-libvirtd')}"
    return ""


def _which(name: str) -> str:
    for d in os.environ.get("PATH", "/usr/sbin:/usr/bin").split(":"):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return ""


# -- whose nodes -----------------------------------------------------------------------
#
# The nodes belong to this machine, but the files they use live under the var/ of the
# checkout that started them. When that checkout is removed, node2's /etc/libvirt (bind-
# mounted from it) becomes a deleted directory: it can neither define guests nor start
# networks. The daemons tell which checkout started them by the paths they were given.

DAEMONS = ("libvirtd", "virtlogd")
PATH_OPTIONS = ("-f", "--config", "-p", "--pid-file")


def infra_dir(path: Path) -> Path | None:
    """The checkout state directory (``<var>/infra``) that ``path`` is one of this
    module's files in (``run/``, ``logs/`` or ``node2/``), else None."""
    parent = path.parent
    if path.is_absolute() and parent.name in (RUN.name, LOGS.name, NODE2_DIR.name):
        if parent.parent.name == STATE.name:
            return parent.parent
    return None


def checkout_files(argv: list[str], environ: dict[str, str]) -> list[Path]:
    """The files in some checkout's state directory that a libvirtd or virtlogd was
    started with: its ``-f``/``-p`` arguments (node2's config and pid files) and the file
    of its ``LIBVIRT_LOG_OUTPUTS`` (which ``_spawn`` gives every daemon it starts)."""
    found = []
    for i, arg in enumerate(argv):
        name, _, value = arg.partition("=")
        if arg in PATH_OPTIONS and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif name in PATH_OPTIONS and name.startswith("--") and value:
            found.append(value)
    for output in environ.get("LIBVIRT_LOG_OUTPUTS", "").split():
        parts = output.split(":", 2)
        if len(parts) == 3 and parts[1] == "file":
            found.append(parts[2])
    return [Path(f) for f in found if infra_dir(Path(f))]


def judge_files(files: list[Path], state: Path = STATE) -> dict:
    """Whose daemon it is, from its ``checkout_files``: ``started_by`` is the state
    directory of the checkout that started it ("" when none did: systemd's libvirtd, one
    started by hand), ``ours`` whether that is ``state``, and ``gone`` the directories of
    those files that no longer exist (directories, not files: a healthy daemon may not
    have written its log yet). Anything gone makes the daemon stale."""
    dirs = [d for d in map(infra_dir, files) if d]
    if not dirs:
        return {"started_by": "", "ours": False, "gone": []}
    gone = sorted({str(f.parent) for f in files if not f.parent.is_dir()})
    ours = os.path.realpath(dirs[0]) == os.path.realpath(state)
    return {"started_by": str(dirs[0]), "ours": ours, "gone": gone}


def mount_replaced(inside: Path, source: Path) -> bool:
    """Is the directory a daemon sees at ``inside`` (``/proc/PID/root/...``) no longer the
    ``source`` it was bind-mounted from: deleted, or ``source`` gone or made anew (a
    checkout removed, then another made at the same path)? False when ``inside`` cannot
    be looked at (not root)."""
    try:
        seen = inside.stat()
    except OSError:
        return False
    if seen.st_nlink == 0:
        return True
    try:
        now = source.stat()
    except OSError:
        return True
    return (seen.st_dev, seen.st_ino) != (now.st_dev, now.st_ino)


def _pids(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name), name):
            found.append(int(entry.name))
    return sorted(found)


def _proc_list(pid: int, what: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/{what}").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _mount_ns(pid: int | str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def daemon_files(pid: int) -> list[Path]:
    """``checkout_files`` of the live process ``pid``, from its ``/proc`` entries."""
    environ = dict(e.partition("=")[::2] for e in _proc_list(pid, "environ") if e)
    return checkout_files(_proc_list(pid, "cmdline"), environ)


def _listener_pid(port: int) -> int:
    """The libvirtd listening on TCP ``port``: the one whose descriptors hold that
    socket's inode (0 when none, or not allowed to look)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return 0
    inodes = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):
            inodes.add(f"socket:[{fields[9]}]")
    for pid in _pids("libvirtd"):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
            except OSError:
                continue
    return 0


def _node_daemons(node: str) -> dict[int, str]:
    """``{pid: program}`` of the daemons serving ``node``: node1's are the libvirtd and
    virtlogd in this mount namespace; node2's every libvirtd, virtlogd and dnsmasq in the
    mount namespace of the libvirtd listening on its port."""
    if node == "node1":
        ns, names = _mount_ns("self"), DAEMONS
    else:
        holder = _listener_pid(NODE2_PORT)
        ns, names = _mount_ns(holder) if holder else "", (*DAEMONS, "dnsmasq")
        if ns == _mount_ns("self"):
            ns = ""  # not a namespace of its own: leave it alone
    if not ns:
        return {}
    return {pid: name for name in names for pid in _pids(name) if _mount_ns(pid) == ns}


def examine(node: str) -> dict:
    """Who started ``node``'s daemons and whether they are stale (``judge_files``; for
    node2 also ``replaced``: its bind-mounted ``/etc/libvirt`` directories that are no
    longer the checkout's), with their ``pids``."""
    daemons = _node_daemons(node)
    files = [f for pid, name in daemons.items() if name in DAEMONS for f in daemon_files(pid)]
    found = {**judge_files(files), "replaced": [], "pids": daemons}
    libvirtd = [pid for pid, name in daemons.items() if name == "libvirtd"]
    if node == "node2" and libvirtd and found["started_by"] and not found["gone"]:
        etc = Path(found["started_by"]) / NODE2_DIR.name / "etc"
        for sub in ETC_DIRS:
            if mount_replaced(Path(f"/proc/{libvirtd[0]}/root/etc/libvirt/{sub}"), etc / sub):
                found["replaced"].append(str(etc / sub))
    return found


def stale_reason(node: str, found: dict) -> str:
    """Why ``node`` (as ``examine`` found it) is stale and what to do, or ""."""
    if found["gone"]:
        what = f"{', '.join(found['gone'])} no longer exist"
    elif found.get("replaced"):
        what = f"its /etc/libvirt dirs are no longer {', '.join(found['replaced'])}"
    else:
        return ""
    return (
        f"{node} was started by the checkout with state {found['started_by']}, but {what}: "
        "it is stale (to replace it: sudo python3 -m tools.infra libvirt up)"
    )


def _replace_if_stale(node: str) -> None:
    """Stop ``node`` when it is stale, so that ``up`` starts this checkout's own; when it
    is another checkout's, say whose it uses."""
    found = examine(node)
    why = stale_reason(node, found)
    if not why:
        if found["started_by"] and not found["ours"]:
            log(f"{node}: using the one started by the checkout with state {found['started_by']}")
        return
    log(f"{node}: {why}: stopping it")
    if node == "node2":
        # Entirely ours: its guests and networks go with it, or their QEMUs, dnsmasqs and
        # bridges would outlive it (and clash with the new node2's).
        _destroy_domains(NODE2_URI, everything=True)
        _destroy_networks(NODE2_URI)
    # node1's guests survive a libvirtd restart and may be any checkout's: left alone, as
    # is a node1 daemon no checkout started (systemd's virtlogd next to our libvirtd).
    for program in (*DAEMONS, "dnsmasq"):
        for pid, name in found["pids"].items():
            if name == program and (node == "node2" or daemon_files(pid)):
                _stop(pid, name)


# -- virtualisation type ----------------------------------------------------------------


def tiny_guest_spec(name: str, image: dict, memory_mib: int = 256, hostname: str = ""):
    """The product's description of a tiny-guest domain (a ``DomainSpec``): direct
    kernel boot of the image's kernel and initramfs, 1 vCPU."""
    from compute.backends.base import DomainSpec

    cmdline = image.get("cmdline", "console=ttyS0 console=tty0").replace(
        "isotope.hostname=NAME", ""
    )
    return DomainSpec(
        name=name,
        vcpus=1,
        memory_mib=memory_mib,
        tenant="infra",
        vm_name=hostname or name,
        vm_uid=str(uuid.uuid5(uuid.NAMESPACE_URL, f"isotope:infra:{name}")),
        kernel=image["kernel"],
        initrd=image["initrd"],
        cmdline=" ".join(cmdline.split()),
    )


def _django() -> None:
    """Give Django bare settings unless the caller has some: the domain XML module's
    texts are marked for translation, and ``python3 -m tools.infra`` runs without the
    portal's settings (which want a database, a secret key and so on)."""
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        settings.configure(USE_I18N=False)


def tiny_guest_xml(
    name: str,
    virt_type: str,
    image: dict,
    serial_log: str,
    memory_mib: int = 256,
    hostname: str = "",
    tsc_khz: int | None = None,
) -> str:
    """The domain XML Isotope itself would define for a tiny guest
    (``compute.backends.libvirt.xml.domain_xml``), so that probes and smoke tests run
    what the product runs: serial to ``serial_log``, VNC on the loopback (autoport); a
    TCG guest also gets the host's ``tsc_khz`` when given, as the product passes it."""
    _django()
    from compute.backends.libvirt.xml import domain_xml

    return domain_xml(
        tiny_guest_spec(name, image, memory_mib, hostname),
        domain_type=virt_type,
        disk_path=None,
        serial_log=serial_log,
        tsc_khz=tsc_khz,
    )


def _probe_key(image: dict) -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line
                break
    except OSError:
        pass
    qemu = run(["qemu-system-x86_64", "--version"]).stdout.splitlines()[:1]
    raw = json.dumps([platform.release(), cpu, qemu, image.get("hash", "")])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _kvm_boots(image: dict) -> tuple[bool, str]:
    name = f"isotope-probe-kvm-{os.getpid()}"
    serial = SERIAL_DIR / f"{name}.log"
    serial.unlink(missing_ok=True)
    xml = NODE2_DIR.parent / f"{name}.xml"
    xml.write_text(tiny_guest_xml(name, "kvm", image, str(serial), memory_mib=192))
    try:
        res = virsh(NODE1_URI, "create", str(xml), timeout=30)
        if res.returncode != 0:
            return False, f"KVM probe guest did not start: {res.stderr.strip()[-300:]}"
        t0 = time.monotonic()
        while time.monotonic() - t0 < PROBE_SECONDS:
            try:
                if "ISOTOPE-GUEST-BOOTED" in serial.read_text(errors="replace"):
                    return True, f"KVM probe guest booted in {time.monotonic() - t0:.1f} s"
            except OSError:
                pass
            time.sleep(0.2)
        return False, f"KVM probe guest showed no banner within {PROBE_SECONDS:.0f} s"
    finally:
        virsh(NODE1_URI, "destroy", name, timeout=30)
        xml.unlink(missing_ok=True)
        serial.unlink(missing_ok=True)


def _virt_type() -> tuple[str, str]:
    forced = os.environ.get("ISOTOPE_VIRT_TYPE", "")
    if forced in ("qemu", "kvm"):
        return forced, f"forced by ISOTOPE_VIRT_TYPE={forced}"
    if not os.path.exists("/dev/kvm"):
        return "qemu", "no /dev/kvm: TCG"
    caps = virsh(NODE1_URI, "domcapabilities", "--virttype", "kvm", timeout=30)
    if caps.returncode != 0:
        return "qemu", "libvirt offers no KVM domains: TCG"
    from . import image as image_part

    img = image_part.status()
    if not img.get("ok"):
        img = image_part.up()
    if not img.get("ok"):
        return "qemu", f"no probe image ({img.get('reason')}): TCG"
    key = _probe_key(img)
    try:
        cached = json.loads(PROBE_CACHE.read_text())
        if cached.get("key") == key:
            return cached["virt_type"], cached["reason"] + " (cached probe)"
    except (OSError, ValueError, KeyError):
        pass
    log("probing KVM with the tiny guest")
    ok, why = _kvm_boots(img)
    virt_type = "kvm" if ok else "qemu"
    reason = why if ok else why + ": TCG"
    PROBE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    PROBE_CACHE.write_text(json.dumps({"key": key, "virt_type": virt_type, "reason": reason}))
    return virt_type, reason


# -- the contract -----------------------------------------------------------------------


def _ensure_volume_pools() -> dict:
    """Define, build, autostart and start each node's volume pool (idempotent).
    Returns ``{node: path}``, or ``{node: "error: …"}`` for a pool that would not start."""
    pools = {}
    STORAGE_ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(STORAGE_ROOT, 0o755)
    for name, uri in (("node1", NODE1_URI), ("node2", NODE2_URI)):
        path = STORAGE_ROOT / name
        if virsh(uri, "pool-info", VOLUME_POOL, timeout=10).returncode != 0:
            res = virsh(uri, "pool-define-as", VOLUME_POOL, "dir", "--target", str(path))
            if res.returncode != 0:
                pools[name] = f"error: {res.stderr.strip()}"
                continue
            virsh(uri, "pool-build", VOLUME_POOL)
            virsh(uri, "pool-autostart", VOLUME_POOL)
        info = virsh(uri, "pool-info", VOLUME_POOL, timeout=10).stdout
        if "running" not in info:
            res = virsh(uri, "pool-start", VOLUME_POOL, "--build")
            if res.returncode != 0:
                pools[name] = f"error: {res.stderr.strip()}"
                continue
        pools[name] = str(path)
    return pools


def _nodes() -> list[dict]:
    nodes = []
    for name, uri in (("node1", NODE1_URI), ("node2", NODE2_URI)):
        found = examine(name)
        nodes.append(
            {
                "name": name,
                "uri": uri,
                "vnc_ports": list(NODE_VNC_PORTS[name]),
                "started_by": found["started_by"],
                "stale": stale_reason(name, found),
                **_probe(uri),
            }
        )
    return nodes


def _fail(reason: str, **extra) -> dict:
    log(f"libvirt: {reason}")
    return write_state(
        PART,
        {
            "ok": False,
            "reason": reason,
            "fallback_uri": "test:///default",
            "nodes": extra.pop("nodes", []),
            "virt_type": "",
            **extra,
        },
    )


def up() -> dict:
    t0 = time.monotonic()
    if not is_root():
        nodes = _nodes()
        stale = [n["stale"] for n in nodes if n["stale"]]
        if stale:
            return _fail("; ".join(stale), nodes=nodes)
        if all(n["reachable"] for n in nodes):
            prev = read_state(PART)
            return write_state(
                PART,
                {
                    **prev,
                    "nodes": nodes,
                    "ok": True,
                    "reason": "both nodes answer (not root: started nothing)",
                },
            )
        return _fail(
            "not root: cannot start libvirtd (run: sudo python3 -m tools.infra libvirt up)",
            nodes=nodes,
        )
    why = ensure_packages(PACKAGES)
    if why:
        return _fail(why)
    if not _which("unshare"):
        return _fail("unshare (util-linux) is missing: cannot create node2")
    SERIAL_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(SERIAL_DIR.parent, 0o755)
    os.chmod(SERIAL_DIR, 0o1777)
    why = _start_node1()
    if why:
        return _fail(why)
    n1 = _wait(NODE1_URI)
    if not n1["reachable"]:
        return _fail(f"node1 does not answer: {n1['error']} | {_tail('node1-libvirtd')}")
    why = _start_node2()
    if why:
        return _fail(why)
    n2 = _wait(NODE2_URI)
    if not n2["reachable"]:
        return _fail(f"node2 does not answer: {n2['error']} | {_tail('node2-libvirtd')}")
    started = time.monotonic() - t0
    pools = _ensure_volume_pools()
    virt_type, virt_reason = _virt_type()
    nodes = _nodes()
    ok = all(n["reachable"] for n in nodes) and nodes[0]["hostname"] != nodes[1]["hostname"]
    stale = [n["stale"] for n in nodes if n["stale"]]
    if stale:
        ok, reason = False, "; ".join(stale)
    elif ok:
        reason = (
            f"node1 {nodes[0]['hostname']} ({NODE1_URI}) and node2 {nodes[1]['hostname']} "
            f"({NODE2_URI}); virt_type {virt_type}: {virt_reason}"
        )
    else:
        reason = "nodes unreachable or with the same hostname"
    return write_state(
        PART,
        {
            "ok": ok,
            "reason": reason,
            "nodes": nodes,
            "virt_type": virt_type,
            "virt_type_reason": virt_reason,
            "serial_dir": str(SERIAL_DIR),
            "volume_pool": VOLUME_POOL,
            "volume_pools": pools,
            "migration_host": "127.0.0.1",
            "fallback_uri": "test:///default",
            "logs": str(LOGS),
            "start_seconds": round(started, 2),
            "seconds": round(time.monotonic() - t0, 2),
        },
    )


def status() -> dict:
    prev = read_state(PART)
    nodes = _nodes()
    ok = all(n["reachable"] for n in nodes) and nodes[0]["hostname"] != nodes[1]["hostname"]
    stale = [n["stale"] for n in nodes if n["stale"]]
    if not ok:
        reason = "nodes not running (run: python3 -m tools.infra libvirt up)"
    elif stale:
        ok, reason = False, "; ".join(stale)
    elif prev.get("ok"):
        reason = prev.get("reason", "")
    else:
        reason = "both nodes answer: " + ", ".join(f"{n['name']} {n['hostname']}" for n in nodes)
    if ok and not prev.get("virt_type"):
        prev["virt_type"] = "qemu"
        prev["virt_type_reason"] = "not probed (run: python3 -m tools.infra libvirt up)"
    return write_state(
        PART,
        {**prev, "ok": ok, "reason": reason, "nodes": nodes, "fallback_uri": "test:///default"},
    )


def _destroy_domains(uri: str, everything: bool) -> None:
    res = virsh(uri, "list", "--all", "--name", timeout=10)
    if res.returncode != 0:
        return
    for name in res.stdout.split():
        if everything or name.startswith(TEST_PREFIXES):
            log(f"{uri}: removing domain {name}")
            virsh(uri, "destroy", name, timeout=30)
            if name.startswith(TEST_PREFIXES):
                virsh(uri, "undefine", name, timeout=30)


def _destroy_networks(uri: str) -> None:
    res = virsh(uri, "net-list", "--name", timeout=10)
    if res.returncode != 0:
        return
    for name in res.stdout.split():
        log(f"{uri}: stopping network {name}")
        virsh(uri, "net-destroy", name, timeout=30)


def _remove_tunnels() -> None:
    """Isotope's VXLAN devices (``isov…``, joining networks' bridges across the nodes)
    outlive the bridges libvirt removes: remove them too."""
    try:
        shown = subprocess.run(
            ["ip", "-j", "link", "show", "type", "vxlan"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        devices = json.loads(shown.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return
    for device in devices:
        name = device.get("ifname", "")
        if name.startswith("isov"):
            log(f"removing tunnel {name}")
            subprocess.run(["ip", "link", "del", "dev", name], timeout=10, check=False)


def down() -> None:
    _remove_tunnels()
    # node2 is entirely ours: stop its guests first, or their QEMUs would outlive it.
    if _daemon_pid(NODE2_PIDS["libvirtd"], "libvirtd"):
        _destroy_domains(NODE2_URI, everything=True)
    for name in ("libvirtd", "virtlogd"):
        _stop(_daemon_pid(NODE2_PIDS[name], name), name)
        NODE2_PIDS[name].unlink(missing_ok=True)
    # node1: remove test leftovers; stop its daemons only if this module started them.
    owned = _owned()
    if _daemon_pid(NODE1_PIDS["libvirtd"], "libvirtd"):
        _destroy_domains(NODE1_URI, everything=False)
    for name in ("libvirtd", "virtlogd"):
        pid = _daemon_pid(NODE1_PIDS[name], name)
        if pid and owned.get(name) == pid:
            _stop(pid, name)
    OWNED.unlink(missing_ok=True)
    write_state(
        PART,
        {
            "ok": False,
            "reason": "stopped (run: python3 -m tools.infra libvirt up)",
            "nodes": [],
            "virt_type": "",
            "fallback_uri": "test:///default",
        },
    )
