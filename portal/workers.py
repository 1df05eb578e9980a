"""The gunicorn worker class of the web tier: uvicorn serving ``portal.asgi`` with the
options the single-process server used (``deploy/gunicorn.conf.py`` selects it)."""

from __future__ import annotations

from uvicorn_worker import UvicornWorker

from portal.env import env_bool


def ws_per_message_deflate() -> bool:
    """Whether the web tier accepts permessage-deflate when a client offers it
    (``ISOTOPE_WS_DEFLATE``, default off).

    Off: the console relay forwards VNC framebuffer data, which its RFB encodings have
    already compressed, and zlib on every relayed byte held its throughput to a tenth
    (bench/README.md, ``console_relay.py``); a live message is encoded once per process
    and written to each socket as it is, where deflate would compress it once per
    socket. Browsers offer the extension; the server declines it."""
    return env_bool("ISOTOPE_WS_DEFLATE")


def uvicorn_options() -> dict:
    """What every uvicorn of the portal runs with: the worker's, the test server's."""
    return {
        "ws": "websockets-sansio",
        "ws_per_message_deflate": ws_per_message_deflate(),
        "lifespan": "off",
    }


class IsotopeWorker(UvicornWorker):
    """uvicorn under gunicorn: uvloop/httptools where installed, the sans-I/O websockets
    implementation, permessage-deflate as ``ISOTOPE_WS_DEFLATE`` says, no lifespan
    protocol (Django does not speak it)."""

    CONFIG_KWARGS = {"loop": "auto", "http": "auto", **uvicorn_options()}
