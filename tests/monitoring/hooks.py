"""A tiny webhook receiver on 127.0.0.1 for tests: records requests, answers as told."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """``answers`` are the status codes to give, in order; the last one repeats."""

    answers: list[int] = field(default_factory=lambda: [200])
    requests: list[Received] = field(default_factory=list)
    url: str = ""
    on_request: Callable[[Received], None] | None = None
    """Called (in the server's thread) with each request before it is answered."""

    def next_status(self) -> int:
        index = min(len(self.requests) - 1, len(self.answers) - 1)
        return self.answers[index]


def serve(receiver: Receiver, address: str = "127.0.0.1", port: int = 0):
    """Start serving ``receiver`` on ``address`` (any free port unless ``port``); returns
    the server (call ``shutdown()``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            received = Received(self.path, dict(self.headers.items()), body)
            if receiver.on_request is not None:
                receiver.on_request(received)
            receiver.requests.append(received)
            status = receiver.next_status()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver.url = f"http://{address}:{server.server_address[1]}/hooks/isotope"
    return server
