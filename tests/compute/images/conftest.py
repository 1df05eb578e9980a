"""Image import fixtures: a private image directory, real qcow2/raw files made with
qemu-img, and an HTTP server on 127.0.0.1 that the test controls."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require


@pytest.fixture
def image_dir(tmp_path, settings):
    """ISOTOPE_IMAGE_DIR in the test's temporary directory; loopback allow-listed."""
    root = tmp_path / "images"
    settings.ISOTOPE_IMAGE_DIR = str(root)
    settings.ISOTOPE_IMAGE_URL_ALLOW = ["127.0.0.1/32"]
    return root


def qemu_img(*args: str) -> None:
    require(shutil.which("qemu-img") is not None, "qemu-img (qemu-utils) is not installed")
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def make_qcow2(path: Path, size: str = "64M", data: bytes = b"isotope-import-test") -> Path:
    """A real qcow2 with some data written into it (qemu-img convert from raw)."""
    raw = path.with_suffix(".src.raw")
    make_raw(raw, size=2 * 1024 * 1024, data=data)
    qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(path))
    qemu_img("resize", "-f", "qcow2", str(path), size)
    raw.unlink()
    return path


def make_raw(path: Path, size: int = 2 * 1024 * 1024, data: bytes = b"") -> Path:
    """A raw disk: zeros (a disk's first sector is binary) with ``data`` at 1 MiB."""
    with path.open("wb") as out:
        out.truncate(size)
        if data:
            out.seek(1024 * 1024)
            out.write(data)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_length: int | None = -1  # -1: the real length; None: no header (close)
    location: str = ""
    delay: float = 0.0  # seconds between 64 KiB blocks
    extra: bytes = b""  # sent after the announced length (a lying server)


@dataclass
class FileServer:
    """``server.add("/x.qcow2", Route(...))``; ``server.url("/x.qcow2")``."""

    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, route: Route | bytes | Path) -> str:
        if isinstance(route, Path):
            route = Route(body=route.read_bytes())
        elif isinstance(route, bytes):
            route = Route(body=route)
        self.routes[path] = route
        return self.url(path)


@pytest.fixture
def file_server():
    server = FileServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 - http.server's name
            server.hits.append(self.path)
            route = server.routes.get(self.path)
            if route is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(route.status)
            if route.location:
                self.send_header("Location", route.location)
            if route.content_length == -1:
                self.send_header("Content-Length", str(len(route.body)))
            elif route.content_length is not None:
                self.send_header("Content-Length", str(route.content_length))
            if route.content_length is None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            body = route.body + route.extra
            try:
                for start in range(0, len(body), 65536):
                    self.wfile.write(body[start : start + 65536])
                    if route.delay:
                        time.sleep(route.delay)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    httpd.shutdown()
    httpd.server_close()
