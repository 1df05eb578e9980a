"""gunicorn settings for the web tier (``make run``, the Procfiles, the systemd unit, the
container): N uvicorn worker processes serving ``portal.asgi:application``, all from the
environment.

    ISOTOPE_WEB_PROCESSES  worker processes (default: the machine's cores)
    ISOTOPE_WEB_BIND       where to listen (default 0.0.0.0:$PORT, PORT default 8000);
                           several, comma separated; ``unix:/run/isotope/web.sock`` works
    ISOTOPE_WEB_TIMEOUT    seconds a silent worker lives before gunicorn replaces it (30)
    FORWARDED_ALLOW_IPS    proxies whose X-Forwarded-* headers uvicorn believes
                           (gunicorn's own variable; default 127.0.0.1)
    ISOTOPE_WS_DEFLATE     websockets accept permessage-deflate (default off; read by
                           the worker class, ``portal.workers``)

Each worker is a full ASGI server (HTTP and websockets); the channel layer (Redis
pub/sub) carries live messages to the sockets of every worker on every machine, so
any number of them can run side by side.
"""

from __future__ import annotations

import os

workers = int(os.environ.get("ISOTOPE_WEB_PROCESSES") or os.cpu_count() or 1)
worker_class = "portal.workers.IsotopeWorker"
bind = [
    address.strip()
    for address in os.environ.get(
        "ISOTOPE_WEB_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}"
    ).split(",")
    if address.strip()
]
timeout = int(os.environ.get("ISOTOPE_WEB_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
# Each worker imports the app itself: no threads or sockets shared across a fork.
preload_app = False
accesslog = os.environ.get("ISOTOPE_WEB_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("ISOTOPE_LOG_LEVEL", "INFO").lower()
proc_name = "isotope-web"
# gunicorn's control socket is one path per user: two servers on a machine would fight
# over it (benchmarks and tests run several); nothing of ours uses it.
control_socket_disable = True
