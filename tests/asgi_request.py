"""One HTTP request to an ASGI application in this process, as an ASGI server such as
uvicorn hands it over: the scope, the whole body, then a ``receive`` that waits (the
client stays connected). No socket, no HTTP parsing."""

from __future__ import annotations

import asyncio


async def asgi_request(
    app, method: str, path: str, body: bytes = b"", headers=()
) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, headers (lower-case name → values) and body of the response."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive():
        if pending:
            return pending.pop()
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    head: dict[str, list[str]] = {}
    for name, value in sent[0]["headers"]:
        head.setdefault(name.decode().lower(), []).append(value.decode())
    return sent[0]["status"], head, b"".join(m.get("body", b"") for m in sent[1:])
