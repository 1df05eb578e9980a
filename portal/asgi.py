"""ASGI entry point: Django for HTTP (its synchronous middleware chain entered once per
request, ``portal.asgi_http``), Channels for websockets.

Once the application is built, the objects loaded so far (Django, the portal's modules,
every view, the URL patterns) are moved out of the garbage collector's sight
(``gc.freeze``): they live as long as the process, yet every full collection walked all
of them — a pause of 90–230 ms of the whole process a few times a minute under load, felt
by every request in flight (bench/README.md, ``vm_create``, "garbage-collector pauses").
A full collection now walks only what requests made since.

Then the youngest generation is collected after ``ISOTOPE_WEB_GC_THRESHOLD`` new objects
(default 20,000) instead of Python's 700. A request's objects mostly go when it ends,
freed by their reference counts; collected every 700 allocations, many of them were
walked while their request was still running, several times over. A create's median CPU
is 3 % lower (bench/README.md, ``accept_cpu``, "the young generation").
"""

from __future__ import annotations

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

from portal.asgi_http import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from portal.routing import websocket_urlpatterns  # noqa: E402
from portal.websockets import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Every websocket route: the exact same-origin rule, then the session.
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


def _freeze_loaded() -> None:
    """The views' modules now rather than on a first request, then everything loaded
    out of the collector's scans (a frozen object is never collected: nothing loaded at
    start-up is meant to go)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports every URLconf and view module
    gc.collect()
    gc.freeze()
    from django.conf import settings

    young = settings.ISOTOPE_WEB_GC_THRESHOLD
    if young > 0:
        gc.set_threshold(young, *gc.get_threshold()[1:])


_freeze_loaded()
