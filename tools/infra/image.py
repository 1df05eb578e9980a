"""The tiny bootable guest image, built from Debian packages only.

Two artefacts, built together and installed where both libvirt nodes (and the
``libvirt-qemu`` user) can read them:

- ``vmlinux`` (or ``vmlinuz``) + ``initrd.img``: Debian's current ``linux-image-*-amd64``
  kernel and a gzip'd cpio (newc) initramfs holding ``busybox-static``. ``vmlinuz`` is the
  packaged bzImage; ``vmlinux`` is the ELF inside it, which QEMU boots through its PVH
  entry point without decompressing (about 2.5 s faster under TCG): state ``kernel``
  names ``vmlinux``, ``kernel_bzimage`` names ``vmlinuz``. Its ``/init`` installs the
  busybox applets, mounts proc/sys/devtmpfs, sets the hostname from the kernel command
  line (``isotope.hostname=NAME``), prints ``ISOTOPE-GUEST-BOOTED hostname=NAME`` to the
  serial port and the VGA console, then keeps a shell running on both ``ttyS0`` and
  ``tty1``. Boot it directly (``<kernel>``/``<initrd>``/``<cmdline>``), no disk needed.
- ``disk.qcow2``: a 16 MiB qcow2 holding an ext2 filesystem (label ``isotope``) with a
  marker file ``/ISOTOPE-DISK``. Use it as the backing file of a per-VM overlay and
  attach it as a virtio disk: the guest loads the virtio/ext4 modules shipped in the
  initramfs, mounts ``/dev/vda`` on ``/mnt/disk`` and prints
  ``ISOTOPE-DISK-MOUNTED marker=...`` to the serial port.

With a virtio NIC the guest loads ``virtio_net`` (shipped in the initramfs), runs
``udhcpc`` on every ``eth*`` (its script sets the leased address and default route and
prints ``ISOTOPE-GUEST-ADDRESS iface=eth0 ip=10.0.0.5/24`` to the serial port), also on
one hot-plugged into the running guest (busybox ``uevent`` hands it the kernel's events), and
serves a one-line page (``isotope-guest NAME``) with busybox ``httpd`` on port 80, so a
test can reach it; busybox ``ping`` and ``nc`` are there too.

The guest also runs busybox ``acpid`` so that an ACPI power-button press (``virsh
shutdown``) powers it off.

Built under ``CACHE/images/<inputs-hash>/`` and installed to
``/var/lib/isotope/images/<inputs-hash>/`` (``ISOTOPE_IMAGE_DIR`` overrides the parent);
rebuilt only when an input changes (package versions, this builder's version, the init
script). Stdlib only, like the rest of ``tools.infra``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from . import CACHE, read_state, write_state

PART = "image"
ARTEFACTS = ("vmlinux", "vmlinuz", "initrd.img", "disk.qcow2", "done")
BUILDER_VERSION = "4"
KERNEL_META = "linux-image-amd64"
BUSYBOX_PKG = "busybox-static"
INSTALL_ROOT = Path(os.environ.get("ISOTOPE_IMAGE_DIR", "/var/lib/isotope/images"))
BUILD_ROOT = CACHE / "images"
DEB_DIR = BUILD_ROOT / "debs"
BANNER = "ISOTOPE-GUEST-BOOTED"
DISK_MARKER = "isotope-disk-v1"
DISK_SIZE_MIB = 16
# Loaded in this order by the guest when a virtio disk is present (no depmod/modprobe).
MODULES = (
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
    "lib/crc16.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "crypto/crc32c_generic.ko",
    "fs/ext4/ext4.ko",
)
# Loaded in this order (after the virtio bus modules above) when a virtio NIC is present.
NET_MODULES = (
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
)
# Loaded early (they are small) so that an ACPI power button reaches acpid.
EARLY_MODULES = ("drivers/input/evdev.ko", "drivers/acpi/button.ko")

INIT_SCRIPT = r"""#!/bin/busybox sh
# Isotope tiny guest: busybox only. Built by tools/infra/image.py.
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /root /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
name=isotope-guest
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    isotope.hostname=*) name="${arg#isotope.hostname=}" ;;
  esac
done
hostname "$name"
echo "$name" > /etc/hostname
banner="ISOTOPE-GUEST-BOOTED hostname=$name kernel=$(uname -r)"
for tty in /dev/ttyS0 /dev/tty1; do
  [ -c "$tty" ] && echo "$banner" > "$tty" 2>/dev/null
done
echo "$banner" > /dev/kmsg 2>/dev/null
cat > /etc/profile <<'EOF'
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
export PS1='\h:\w# '
EOF
console_shell() {
  while :; do
    setsid -c sh -l < "$1" > "$1" 2>&1
    sleep 1
  done
}
[ -c /dev/ttyS0 ] && console_shell /dev/ttyS0 &
(
  for m in /lib/modules/early/*.ko; do insmod "$m" 2>/dev/null; done
  acpid -c /etc/acpi -l /tmp/acpid.log 2>/dev/null
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor" 2>/dev/null)" = 0x1af4 ] || continue
    for m in $(cat /lib/modules/disk/order); do insmod "/lib/modules/disk/$m" 2>/dev/null; done
    break
  done
  (
    ip link set lo up
    mkdir -p /www && echo "isotope-guest $name" > /www/index.html
    # Kernel events from here on (a NIC hot-plugged later), then the NICs already there.
    uevent /etc/nic-event > /dev/null 2>&1 &
    /etc/nic-event
  ) &
  for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
  if [ -b /dev/vda ]; then
    mkdir -p /mnt/disk
    if mount -t ext4 /dev/vda /mnt/disk 2>/dev/null; then
      echo "ISOTOPE-DISK-MOUNTED marker=$(cat /mnt/disk/ISOTOPE-DISK 2>/dev/null)" > /dev/ttyS0
    fi
  fi
) &
console_shell /dev/tty1
"""

# udhcpc's hook: the leased address on the interface, the default route, and the address
# on the serial port (tests and bench/network.py read it there).
UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$router" ]; then
      ip route replace default via "${router%% *}" dev "$interface"
    fi
    echo "ISOTOPE-GUEST-ADDRESS iface=$interface ip=$ip/$mask" > /dev/ttyS0
    ;;
esac
exit 0
"""

# The guest's NICs, run once at boot and by busybox ``uevent`` for every kernel event
# after it (so a NIC hot-plugged into the running guest is brought up too): with a virtio
# NIC on the PCI bus, load virtio_net (and the virtio bus) once and start httpd; then one
# udhcpc per eth* (claimed with an atomic mkdir, so the boot scan and an event never start
# two); a removed eth* stops its udhcpc and frees the name for the next NIC.
NIC_SCRIPT = r"""#!/bin/sh
case "$ACTION/$SUBSYSTEM" in
  /|add/pci|add/net) ;;
  remove/net)
    claim="/tmp/udhcpc.$INTERFACE"
    [ -f "$claim/pid" ] && kill "$(cat "$claim/pid")" 2>/dev/null
    rm -rf "$claim"
    exit 0
    ;;
  *) exit 0 ;;
esac
if [ ! -d /sys/module/virtio_net ]; then
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat "$d/vendor" 2>/dev/null)" = 0x1af4 ] || continue
    case "$(cat "$d/class" 2>/dev/null)" in 0x0200*) ;; *) continue ;; esac
    for m in $(cat /lib/modules/disk/order); do insmod "/lib/modules/disk/$m" 2>/dev/null; done
    for m in $(cat /lib/modules/net/order); do insmod "/lib/modules/net/$m" 2>/dev/null; done
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 0.2; done
    break
  done
fi
for nic in /sys/class/net/eth*; do
  [ -e "$nic" ] || continue
  mkdir /tmp/httpd.on 2>/dev/null && httpd -p 80 -h /www
  iface="${nic##*/}"
  claim="/tmp/udhcpc.$iface"
  mkdir "$claim" 2>/dev/null || continue
  udhcpc -f -i "$iface" -p "$claim/pid" -x "hostname:$(hostname)" -s /etc/udhcpc.script \
    > /dev/null 2>&1 &
done
exit 0
"""

POWEROFF_SCRIPT = "#!/bin/sh\necho ISOTOPE-GUEST-POWEROFF > /dev/ttyS0\nsync\npoweroff -f\n"

# Typing on the tiny guest's VGA console (its shell on tty1) with virDomainSendKey:
# Linux input keycodes of a US keyboard; shifted characters share their key with SHIFT.
_KEYS = {c: code for code, c in enumerate("1234567890-=", start=2)}
_KEYS.update({c: code for code, c in enumerate("qwertyuiop[]", start=16)})
_KEYS.update({c: code for code, c in enumerate("asdfghjkl;'", start=30)})
_KEYS.update({c: code for code, c in enumerate("zxcvbnm,./", start=44)})
_KEYS.update({" ": 57, "\n": 28, "\\": 43})
_SHIFTED = dict(zip('!@#$%^&*()_+{}:"<>?|', "1234567890-=[];',./\\", strict=True))
_SHIFT = 42


# What a broken guest kernel prints (a panic, an oops, a lockup), whatever it does next.
PANIC_TEXT = (
    r"Kernel panic|Attempted to kill|BUG: |Oops|general protection fault|double fault|"
    r"invalid opcode|RIP: |Call Trace|watchdog: BUG|rcu_sched self-detected"
)
# Typed on the tiny guest's console: a loop that keeps rewriting 1 MiB of page cache and
# comparing its two copies, printing CHURN-MISMATCH to the serial port when they differ
# (a page that reached a migration's target stale shows there, or as a kernel crash).
MEMORY_CHURN = (
    "while :; do dd if=/dev/urandom of=/tmp/a bs=4k count=256 2>/dev/null; "
    "cp /tmp/a /tmp/b; cmp -s /tmp/a /tmp/b || echo CHURN-MISMATCH > /dev/ttyS0; done &\n"
)


def type_keys(domain, text: str) -> None:
    """Type ``text`` on a running guest's keyboard (a libvirt ``virDomain``)."""
    linux_keycodes = 0  # libvirt.VIR_KEYCODE_SET_LINUX; tools.infra needs no bindings
    for ch in text:
        if ch in _SHIFTED or ch.isupper():
            codes = [_SHIFT, _KEYS[_SHIFTED.get(ch, ch.lower())]]
        else:
            codes = [_KEYS[ch]]
        domain.sendKey(linux_keycodes, 20, codes, len(codes), 0)


# -- small helpers shared with tools.infra.libvirt ------------------------------------


def is_root() -> bool:
    return os.geteuid() == 0


def log(msg: str) -> None:
    print(f"[infra] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command and capture its output as text (never raises on exit status)."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 600)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    return subprocess.run(cmd, env=env, check=False, **kw)


def missing_packages(packages: list[str]) -> list[str]:
    missing = []
    for pkg in packages:
        res = run(["dpkg-query", "-W", "-f=${Status}", pkg])
        if res.returncode != 0 or "install ok installed" not in res.stdout:
            missing.append(pkg)
    return missing


_apt_updated = False


def apt_update() -> None:
    global _apt_updated
    if not _apt_updated and is_root():
        log("apt-get update")
        run(["apt-get", "update", "-q"], timeout=900)
        _apt_updated = True


def ensure_packages(packages: list[str]) -> str:
    """Install missing Debian packages when root; return '' or why they are missing."""
    missing = missing_packages(packages)
    if not missing:
        return ""
    line = "apt-get install -y " + " ".join(missing)
    if not is_root():
        return f"missing Debian packages; run as root: {line}"
    log(line)
    res = run(["apt-get", "install", "-y", "-q", *missing], timeout=1800)
    if res.returncode != 0:
        apt_update()
        res = run(["apt-get", "install", "-y", "-q", *missing], timeout=1800)
    if res.returncode != 0:
        return f"{line} failed: {res.stderr.strip()[-500:]}"
    return ""


# -- package resolution ---------------------------------------------------------------


def _candidate(pkg: str) -> str:
    res = run(["apt-cache", "policy", pkg])
    for line in res.stdout.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            value = line.split(":", 1)[1].strip()
            return "" if value == "(none)" else value
    return ""


def _kernel_package() -> str:
    res = run(["apt-cache", "depends", KERNEL_META])
    for line in res.stdout.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split(":", 1)[1].strip()
    return ""


def resolve_inputs() -> dict:
    """Package names and versions the image is built from (apt's current candidates)."""
    for attempt in range(2):
        kernel = _kernel_package()
        kver = _candidate(kernel) if kernel else ""
        bver = _candidate(BUSYBOX_PKG)
        if kernel and kver and bver:
            return {
                "kernel_pkg": kernel,
                "kernel_version": kver,
                "busybox_version": bver,
            }
        if attempt == 0:
            apt_update()
    raise RuntimeError(
        f"apt knows no {KERNEL_META} / {BUSYBOX_PKG} candidate (run: apt-get update)"
    )


def inputs_hash(inputs: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(inputs):
        h.update(f"{key}={inputs[key]}\n".encode())
    h.update(BUILDER_VERSION.encode())
    h.update(INIT_SCRIPT.encode())
    h.update(POWEROFF_SCRIPT.encode())
    h.update(UDHCPC_SCRIPT.encode())
    h.update(NIC_SCRIPT.encode())
    h.update("\n".join(MODULES + NET_MODULES + EARLY_MODULES).encode())
    h.update(f"{DISK_MARKER}/{DISK_SIZE_MIB}".encode())
    return h.hexdigest()[:16]


def _download(pkg: str, version: str) -> Path:
    DEB_DIR.mkdir(parents=True, exist_ok=True)
    arch = "amd64"
    quoted = version.replace(":", "%3a")
    deb = DEB_DIR / f"{pkg}_{quoted}_{arch}.deb"
    if deb.exists():
        return deb
    tmp = Path(tempfile.mkdtemp(prefix="dl-", dir=DEB_DIR))
    res = run(["apt-get", "download", "-q", f"{pkg}={version}"], cwd=tmp, timeout=900)
    debs = list(tmp.glob("*.deb"))
    if res.returncode != 0 or not debs:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"apt-get download {pkg}={version} failed: {res.stderr[-400:]}")
    debs[0].replace(deb)
    shutil.rmtree(tmp, ignore_errors=True)
    return deb


def _extract(deb: Path, members: list[str], dest: Path) -> None:
    """Extract some members (tar wildcards) of a .deb's data archive (like dpkg -x)."""
    dest.mkdir(parents=True, exist_ok=True)
    deb_tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    tar = subprocess.run(
        ["tar", "-x", "-C", str(dest), "--wildcards", *members],
        stdin=deb_tar.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    deb_tar.stdout.close()
    deb_tar.wait()
    if deb_tar.returncode != 0 or tar.returncode != 0:
        raise RuntimeError(f"extracting {members} from {deb.name} failed: {tar.stderr}")


# -- initramfs (cpio newc written here: deterministic, no root needed for /dev nodes) -


class _Cpio:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev=(0, 0), nlink=1):
        namebytes = name.encode() + b"\0"
        fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],
            len(namebytes),
            0,
        ]
        self.ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf.write(header + namebytes)
        self.buf.write(b"\0" * (-(len(header) + len(namebytes)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm, nlink=2)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self.ino = 0
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def _build_initrd(
    busybox: bytes, modules: dict[str, bytes], net: dict[str, bytes], early: dict[str, bytes]
) -> bytes:
    c = _Cpio()
    for d in (
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "etc/acpi",
        "etc/acpi/PWRF",
        "proc",
        "sys",
        "dev",
        "tmp",
        "mnt",
        "root",
        "lib",
        "lib/modules",
        "lib/modules/disk",
        "lib/modules/net",
        "lib/modules/early",
    ):
        c.dir(d, 0o1777 if d == "tmp" else 0o755)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.chardev("dev/ttyS0", 4, 64)
    c.chardev("dev/tty1", 4, 1)
    c.file("bin/busybox", busybox, 0o755)
    c.symlink("bin/sh", "busybox")
    c.file("init", INIT_SCRIPT.encode(), 0o755)
    c.file("etc/acpi/PWRF/00000080", POWEROFF_SCRIPT.encode(), 0o755)
    c.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    c.file("etc/nic-event", NIC_SCRIPT.encode(), 0o755)
    c.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    c.file("etc/group", b"root:x:0:\n")
    order = []
    for name, data in modules.items():
        c.file(f"lib/modules/disk/{name}", data)
        order.append(name)
    c.file("lib/modules/disk/order", ("\n".join(order) + "\n").encode())
    for name, data in net.items():
        c.file(f"lib/modules/net/{name}", data)
    c.file("lib/modules/net/order", ("\n".join(net) + "\n").encode())
    for name, data in early.items():
        c.file(f"lib/modules/early/{name}", data)
    raw = c.finish()
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    return out.getvalue()


def _extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed ELF kernel inside a bzImage (Debian compresses it with xz).

    QEMU boots that ELF through its PVH entry point, which skips the decompression that
    costs about 2.5 s of a 5 s boot under TCG.
    """
    start = bzimage.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise RuntimeError("no xz stream in the kernel image")
    elf = lzma.LZMADecompressor().decompress(bzimage[start:])
    if not elf.startswith(b"\x7fELF"):
        raise RuntimeError("the kernel image's xz stream is no ELF")
    return elf


def _build_disk(dest: Path, work: Path) -> None:
    """A small ext2 filesystem in a qcow2 with a marker file (mke2fs -d, qemu-img)."""
    content = work / "disk-root"
    content.mkdir()
    (content / "ISOTOPE-DISK").write_text(DISK_MARKER + "\n")
    raw = work / "disk.raw"
    res = run(
        [
            "mke2fs",
            "-q",
            "-F",
            "-t",
            "ext2",
            "-L",
            "isotope",
            "-d",
            str(content),
            str(raw),
            f"{DISK_SIZE_MIB}M",
        ]
    )
    if res.returncode != 0:
        raise RuntimeError(f"mke2fs failed: {res.stderr}")
    res = run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(dest)])
    if res.returncode != 0:
        raise RuntimeError(f"qemu-img convert failed: {res.stderr}")
    raw.unlink()


def build(inputs: dict, digest: str) -> Path:
    """Build into CACHE/images/<digest>/ (atomically) unless it is already there."""
    out = BUILD_ROOT / digest
    if (out / "done").exists():
        return out
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"build-{digest}-", dir=BUILD_ROOT))
    try:
        kdeb = _download(inputs["kernel_pkg"], inputs["kernel_version"])
        bdeb = _download(BUSYBOX_PKG, inputs["busybox_version"])
        kx = work / "kernel"
        wanted = ["./boot/vmlinuz-*"] + [
            f"./lib/modules/*/kernel/{m}" for m in MODULES + NET_MODULES + EARLY_MODULES
        ]
        _extract(kdeb, wanted, kx)
        vmlinuz = sorted((kx / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise RuntimeError(f"no boot/vmlinuz-* in {kdeb.name}")
        (kdir,) = list((kx / "lib" / "modules").iterdir())
        modules = {}
        for m in MODULES:
            modules[Path(m).name] = (kdir / "kernel" / m).read_bytes()
        net = {Path(m).name: (kdir / "kernel" / m).read_bytes() for m in NET_MODULES}
        early = {Path(m).name: (kdir / "kernel" / m).read_bytes() for m in EARLY_MODULES}
        bx = work / "busybox"
        _extract(bdeb, ["./bin/busybox"], bx)
        busybox = (bx / "bin" / "busybox").read_bytes()

        stage = work / "out"
        stage.mkdir()
        shutil.copyfile(vmlinuz[0], stage / "vmlinuz")
        (stage / "vmlinux").write_bytes(_extract_vmlinux(vmlinuz[0].read_bytes()))
        (stage / "initrd.img").write_bytes(_build_initrd(busybox, modules, net, early))
        _build_disk(stage / "disk.qcow2", work)
        (stage / "done").write_text(f"{time.time():.0f}\n")
        if out.exists():
            shutil.rmtree(out)
        stage.replace(out)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(src: Path, digest: str) -> Path:
    """Copy the artefacts to a world-readable place outside the node2 tmpfs mounts."""
    dest = INSTALL_ROOT / digest
    if (dest / "done").exists():
        return dest
    for parent in reversed([INSTALL_ROOT, *INSTALL_ROOT.parents]):
        if not parent.exists():
            parent.mkdir(mode=0o755)
    os.chmod(INSTALL_ROOT, 0o755)
    tmp = INSTALL_ROOT / f".{digest}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o755)
    for name in ARTEFACTS:
        shutil.copyfile(src / name, tmp / name)
        os.chmod(tmp / name, 0o644)
    os.chmod(tmp, 0o755)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.replace(dest)
    return dest


def _result(dest: Path, inputs: dict, digest: str, seconds: float, built: bool) -> dict:
    return {
        "ok": True,
        "reason": f"tiny guest {digest} ({inputs['kernel_pkg']} {inputs['kernel_version']}, "
        f"busybox-static {inputs['busybox_version']})",
        "hash": digest,
        "dir": str(dest),
        "kernel": str(dest / "vmlinux"),
        "kernel_bzimage": str(dest / "vmlinuz"),
        "initrd": str(dest / "initrd.img"),
        "disk": str(dest / "disk.qcow2"),
        "disk_format": "qcow2",
        "disk_marker": DISK_MARKER,
        "cmdline": "console=ttyS0 console=tty0 isotope.hostname=NAME",
        "banner": BANNER,
        "prompt": "NAME:/# ",
        # udhcpc on a virtio NIC, ISOTOPE-GUEST-ADDRESS on the serial port, httpd on :80.
        "guest_network": True,
        "inputs": inputs,
        "built": built,
        "seconds": round(seconds, 2),
    }


def ensure() -> dict:
    """Build and install this builder's image unless it is installed already; returns
    what ``up`` records, without recording it (``bench/network.py`` boots the image of
    the code it runs while the shared state may still name an older one)."""
    t0 = time.monotonic()
    why = ensure_packages(["qemu-utils", "e2fsprogs"])
    if why:
        raise RuntimeError(why)
    inputs = resolve_inputs()
    digest = inputs_hash(inputs)
    dest = INSTALL_ROOT / digest
    built = False
    if not (dest / "done").exists():
        if not is_root() and not os.access(INSTALL_ROOT.parent, os.W_OK):
            raise RuntimeError(f"cannot write {INSTALL_ROOT}; run as root or set ISOTOPE_IMAGE_DIR")
        log(f"building tiny guest image {digest}")
        src = build(inputs, digest)
        dest = _install(src, digest)
        built = True
    return _result(dest, inputs, digest, time.monotonic() - t0, built)


def up() -> dict:
    try:
        return write_state(PART, ensure())
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as exc:
        return write_state(PART, {"ok": False, "reason": f"image build failed: {exc}"})


def status() -> dict:
    state = read_state(PART)
    if state.get("ok"):
        keys = ("kernel", "kernel_bzimage", "initrd", "disk")
        missing = [k for k in keys if not Path(state.get(k, "/nonexistent")).exists()]
        if missing:
            state = {"ok": False, "reason": f"image files gone: {missing} (run image up)"}
    return state


def down() -> None:
    """Nothing runs: the image stays installed and cached."""


__all__ = ["up", "down", "status", "ensure"]
