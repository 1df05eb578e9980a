"""The gunicorn worker class of the web tier: uvicorn serving ``portal.asgi`` with the
options the single-process server used (``deploy/gunicorn.conf.py`` selects it)."""

from __future__ import annotations

from uvicorn_worker import UvicornWorker


class IsotopeWorker(UvicornWorker):
    """uvicorn under gunicorn: uvloop/httptools where installed, the sans-I/O websockets
    implementation, no lifespan protocol (Django does not speak it)."""

    CONFIG_KWARGS = {"loop": "auto", "http": "auto", "ws": "websockets-sansio", "lifespan": "off"}
