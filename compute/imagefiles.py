"""Image files: where they live, fetching them over HTTP(S), inspecting and converting
them with ``qemu-img``. No database access: ``compute.services.images`` decides.

libvirt has no API to inspect or convert an arbitrary file, so ``qemu-img`` (Debian's
``qemu-utils``) runs as a subprocess, with resource limits for ``info`` (a crafted image
must not exhaust the worker) and the format always given explicitly after detection
(a raw file whose first bytes look like a qcow2 header is never re-probed as one).

Every refusal raises :class:`ImageRefused` with a message fit for the tenant.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import os
import re
import resource
import shutil
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from compute.texts import imagefiles as texts
from monitoring.delivery import PinnedHTTPConnection, PinnedHTTPSConnection

logger = logging.getLogger(__name__)

GIB = 1024**3
BLOCK = 1024 * 1024
SECTOR = 512
MAX_REDIRECTS = 5
# ``qemu-img info`` limits: 1 GiB of address space and 30 s of CPU (OpenStack's
# mitigation for images crafted to make the parser explode).
INFO_ADDRESS_SPACE = 1024**3
INFO_CPU_SECONDS = 30
ACCEPTED_FORMATS = ("qcow2", "raw")
# How a text file starts: markup, JSON, a shebang, or plain words.
TEXT_START = re.compile(rb"^\s*(<|\{|\[|#!|[A-Za-z0-9 ._:/-]{16})")

Progress = Callable[[int, int | None], None]


class ImageRefused(Exception):
    """The file or URL cannot become an image; ``str(error)`` tells the tenant why."""


class TransientFetchError(ImageRefused):
    """The server could not be reached or broke off; trying again may work."""


# --- Where files live --------------------------------------------------------------------
@dataclass(frozen=True)
class ImagePaths:
    """The files of one image. Staging files are private to the portal (0600 in a 0700
    directory) and on the same filesystem as the final file, so the final step is one
    atomic ``rename``; the final qcow2 is world-readable so QEMU on every host can
    open it as a backing file."""

    staging: Path
    upload: Path
    download: Path
    converting: Path
    final: Path

    def leftovers(self) -> list[Path]:
        """Everything an unfinished import may have left behind."""
        return [self.upload, self.download, self.converting, self.final]


def image_root() -> Path:
    return Path(settings.ISOTOPE_IMAGE_DIR)


def paths_for(tenant_slug: str, uid: str) -> ImagePaths:
    root = image_root()
    staging = root / ".staging"
    return ImagePaths(
        staging=staging,
        upload=staging / f"{uid}.upload",
        download=staging / f"{uid}.download",
        converting=staging / f"{uid}.qcow2.part",
        final=root / "tenants" / tenant_slug / f"{uid}.qcow2",
    )


def ensure_dirs(paths: ImagePaths) -> None:
    paths.staging.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.staging, 0o700)
    paths.final.parent.mkdir(parents=True, exist_ok=True)
    # Both libvirt nodes' QEMU processes read the final files (another user).
    for directory in (paths.final.parent, paths.final.parent.parent):
        os.chmod(directory, 0o755)  # noqa: S103 - images are not secret to the hosts


def remove(*files: Path) -> None:
    for path in files:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def gib_for(size_bytes: int) -> int:
    """Storage quota for a file of ``size_bytes``: GiB rounded up, at least 1."""
    return max(1, -(-int(size_bytes) // GIB))


# --- Fetching over HTTP(S) ------------------------------------------------------------------
@dataclass(frozen=True)
class Fetched:
    size: int
    sha256: str


def check_url(url: str) -> urllib.parse.SplitResult:
    """The URL's parts, or ``ImageRefused`` for anything but plain http(s) URLs."""
    if not isinstance(url, str) or not url.strip():
        raise ImageRefused(texts.URL_MISSING)
    url = url.strip()
    if len(url) > 2000:
        raise ImageRefused(texts.URL_TOO_LONG)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ImageRefused(texts.URL_INVALID) from None
    if parts.scheme not in ("http", "https"):
        raise ImageRefused(texts.URL_SCHEME)
    if not parts.hostname:
        raise ImageRefused(texts.URL_NO_HOST)
    if parts.username or parts.password:
        raise ImageRefused(texts.URL_CREDENTIALS)
    if port == 0:
        raise ImageRefused(texts.URL_PORT)
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ImageRefused(texts.URL_SPACES)
    return parts


def allowed_networks() -> list:
    """Non-public networks imports may reach anyway (``ISOTOPE_IMAGE_URL_ALLOW``)."""
    networks = []
    for item in settings.ISOTOPE_IMAGE_URL_ALLOW:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            logger.warning("ignoring invalid ISOTOPE_IMAGE_URL_ALLOW entry %r", item)
    return networks


def url_addresses(parts: urllib.parse.SplitResult) -> list[str]:
    """Resolve the URL's host with the portal's one destination check (the webhooks'):
    internal addresses are refused unless ``ISOTOPE_IMAGE_URL_ALLOW`` lists them. The
    download connects to these very addresses (no second lookup to rebind)."""
    from monitoring.delivery import resolve

    addresses, refusal = resolve(
        parts.hostname, parts.port, allow_private=False, allowed_networks=allowed_networks()
    )
    if refusal and not addresses:
        raise TransientFetchError(refusal)
    if refusal:
        raise ImageRefused(texts.NOT_PUBLIC % {"refusal": refusal})
    return addresses


def _open(url: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET ``url`` following at most MAX_REDIRECTS redirects, each hop checked again."""
    timeout = settings.ISOTOPE_IMAGE_DOWNLOAD_TIMEOUT
    for _ in range(MAX_REDIRECTS + 1):
        parts = check_url(url)
        addresses = url_addresses(parts)
        https = parts.scheme == "https"
        kind = PinnedHTTPSConnection if https else PinnedHTTPConnection
        port = parts.port or (http.client.HTTPS_PORT if https else http.client.HTTP_PORT)
        conn = kind(parts.hostname, port, addresses=addresses, timeout=timeout)
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        try:
            conn.request("GET", target, headers={"User-Agent": "Isotope image import"})
            response = conn.getresponse()
        except ssl.SSLError as error:
            conn.close()
            raise ImageRefused(
                texts.TLS_FAILED % {"host": parts.hostname, "reason": error.reason}
            ) from None
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            raise TransientFetchError(
                texts.FETCH_FAILED % {"host": parts.hostname, "error": error}
            ) from None
        if response.status in (301, 302, 303, 307, 308):
            location = response.getheader("Location") or ""
            conn.close()
            if not location:
                raise ImageRefused(texts.REDIRECT_WITHOUT_LOCATION % {"status": response.status})
            url = urllib.parse.urljoin(url, location)
            continue
        if response.status != 200:
            conn.close()
            error = texts.SERVER_ANSWERED % {"status": response.status, "reason": response.reason}
            if response.status >= 500 or response.status == 429:
                raise TransientFetchError(error)
            raise ImageRefused(error)
        return conn, response
    raise ImageRefused(texts.TOO_MANY_REDIRECTS % {"count": MAX_REDIRECTS})


def fetch(url: str, dest: Path, *, limit: int, on_progress: Progress) -> Fetched:
    """Download ``url`` into ``dest`` (created 0600, truncated), hashing as it goes.

    ``limit`` bounds the size: a ``Content-Length`` above it is refused before reading,
    and a body that grows past it is cut there and refused. A body shorter than its
    ``Content-Length`` is a broken transfer (transient). ``on_progress(bytes, total)``
    is called after every block.
    """
    conn, response = _open(url)
    try:
        total = response.getheader("Content-Length")
        total_bytes = int(total) if total and total.isdigit() else None
        if total_bytes is not None and total_bytes > limit:
            raise ImageRefused(
                texts.DECLARED_TOO_LARGE % {"size": f"{total_bytes:,}", "limit": f"{limit:,}"}
            )
        digest = hashlib.sha256()
        received = 0
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            while True:
                try:
                    block = response.read1(BLOCK)
                except (OSError, http.client.HTTPException) as error:
                    raise TransientFetchError(
                        texts.BROKE_OFF_WITH_ERROR % {"received": f"{received:,}", "error": error}
                    ) from None
                if not block:
                    break
                received += len(block)
                if received > limit:
                    raise ImageRefused(texts.DOWNLOAD_TOO_LARGE % {"limit": f"{limit:,}"})
                out.write(block)
                digest.update(block)
                on_progress(received, total_bytes)
            out.flush()
            os.fsync(out.fileno())
        if total_bytes is not None and received < total_bytes:
            raise TransientFetchError(
                texts.BROKE_OFF_SHORT % {"received": f"{received:,}", "total": f"{total_bytes:,}"}
            )
        return Fetched(size=received, sha256=digest.hexdigest())
    finally:
        conn.close()


def sha256_file(path: Path, on_progress: Progress) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as source:
        while block := source.read(BLOCK):
            digest.update(block)
            done += len(block)
            on_progress(done, total)
    return digest.hexdigest()


# --- qemu-img -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageInfo:
    format: str
    virtual_size: int
    file_size: int


def qemu_img() -> str:
    binary = shutil.which("qemu-img")
    if binary is None:
        raise ImageRefused(texts.NO_QEMU_IMG)
    return binary


def _limit_info_process() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (INFO_ADDRESS_SPACE, INFO_ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CPU, (INFO_CPU_SECONDS, INFO_CPU_SECONDS))


def _info(path: Path, fmt: str | None = None) -> dict:
    command = [qemu_img(), "info", "--output=json"]
    if fmt:
        command += ["-f", fmt]
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [*command, str(path)],
            capture_output=True,
            text=True,
            timeout=INFO_CPU_SECONDS * 2,
            preexec_fn=_limit_info_process,  # noqa: PLW1509 - no threads touch the child
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageRefused(texts.INFO_TIMEOUT) from None
    if done.returncode != 0:
        reason = (done.stderr or "").strip().splitlines()[-1:] or ["unreadable"]
        raise ImageRefused(texts.INFO_FAILED % {"reason": reason[0][:300]})
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise ImageRefused(texts.INFO_UNREADABLE) from None


def inspect(path: Path, *, min_raw_bytes: int, max_virtual_bytes: int) -> ImageInfo:
    """Detect the format (``qemu-img info``) and refuse what cannot become an image:
    formats other than qcow2 and raw; a qcow2 with a backing file or an external data
    file (it would read files outside the upload) or encryption; a raw file that is
    empty, too small, not whole 512-byte sectors, or text (an HTML error page); a
    virtual size past ``max_virtual_bytes``."""
    size = path.stat().st_size
    if size == 0:
        raise ImageRefused(texts.FILE_EMPTY)
    info = _info(path)
    fmt = info.get("format", "")
    if fmt not in ACCEPTED_FORMATS:
        raise ImageRefused(texts.WRONG_FORMAT % {"format": fmt} if fmt else texts.UNKNOWN_FORMAT)
    if fmt == "qcow2":
        if info.get("backing-filename") or info.get("full-backing-filename"):
            raise ImageRefused(
                texts.BACKING_FILE % {"file": repr(info.get("backing-filename", "")[:200])}
            )
        data = (info.get("format-specific") or {}).get("data") or {}
        if data.get("data-file"):
            raise ImageRefused(texts.EXTERNAL_DATA_FILE)
        if info.get("encrypted") or data.get("encrypt"):
            raise ImageRefused(texts.ENCRYPTED)
        if data.get("corrupt"):
            raise ImageRefused(texts.CORRUPT)
    else:
        if size < min_raw_bytes:
            raise ImageRefused(
                texts.RAW_TOO_SMALL % {"size": f"{size:,}", "minimum": f"{min_raw_bytes:,}"}
            )
        if _looks_like_text(path):
            raise ImageRefused(texts.TEXT_FILE)
        if size % SECTOR:
            raise ImageRefused(texts.NOT_WHOLE_SECTORS % {"size": f"{size:,}"})
    virtual = int(info.get("virtual-size") or 0)
    if virtual <= 0:
        raise ImageRefused(texts.NO_SIZE)
    if virtual > max_virtual_bytes:
        raise ImageRefused(
            texts.DISK_TOO_LARGE
            % {"size": f"{virtual / GIB:,.1f}", "maximum": f"{max_virtual_bytes // GIB:,}"}
        )
    return ImageInfo(format=fmt, virtual_size=virtual, file_size=size)


def _looks_like_text(path: Path) -> bool:
    """Disk images start with boot code, a partition table or zeros; a text file starts
    with markup or words and has no NUL bytes in its first 4 KiB."""
    with path.open("rb") as source:
        head = source.read(4096)
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(TEXT_START.match(head))


_CONVERT_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def convert(
    source: Path, fmt: str, dest: Path, *, on_progress: Callable[[float], None]
) -> ImageInfo:
    """``qemu-img convert -f <fmt> -O qcow2`` into ``dest`` (0644), then check that the
    result is a standalone qcow2. ``on_progress(percent)`` follows ``-p``."""
    remove(dest)
    process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        [qemu_img(), "convert", "-p", "-f", fmt, "-O", "qcow2", str(source), str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe: progress and errors cannot block each other
    )
    assert process.stdout is not None
    tail = b""
    try:
        while True:
            chunk = process.stdout.read1(512)
            if not chunk:
                break
            tail = (tail + chunk)[-4096:]
            found = _CONVERT_PROGRESS.findall(tail[-512:])
            if found:
                on_progress(float(found[-1]))
        code = process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    if code != 0:
        text = _CONVERT_PROGRESS.sub(b"", tail).decode(errors="replace").replace("\r", "\n")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {code}"
        raise ImageRefused(texts.CONVERT_FAILED % {"reason": reason[:300]})
    os.chmod(dest, 0o644)
    info = _info(dest, "qcow2")
    if info.get("backing-filename"):
        raise ImageRefused(texts.CONVERTED_HAS_BACKING)
    return ImageInfo(
        format="qcow2",
        virtual_size=int(info.get("virtual-size") or 0),
        file_size=dest.stat().st_size,
    )


class RateMeter:
    """Bytes per second over the last few seconds, for progress messages."""

    def __init__(self, window: float = 3.0):
        self.window = window
        self.samples: list[tuple[float, int]] = []

    def add(self, done: int) -> int:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.pop(0)
        first_t, first_done = self.samples[0]
        elapsed = now - first_t
        return int((done - first_done) / elapsed) if elapsed > 0 else 0
