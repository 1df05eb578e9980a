"""The portal's ASGI application for ``bench/console_relay.py``'s synthetic part: the
console's endpoint lookup runs as always (the VM's checks and the libvirt call on its
host), and its answer is replaced by ``ISOTOPE_BENCH_VNC`` (``host:port``), the
benchmark's synthetic RFB server, so that the relay's ceiling is measured with a VNC
server that never waits. Ticket, Origin, session, slot, filter and relay are the
portal's own. Never used outside the benchmark."""

import os

from portal.asgi import application  # noqa: F401 - served by uvicorn; sets Django up


def _redirect() -> None:
    from compute.services import console

    host, port = os.environ["ISOTOPE_BENCH_VNC"].rsplit(":", 1)
    lookup = console.console_endpoint

    def synthetic_endpoint(*, vm_id: int) -> tuple[str, int]:
        lookup(vm_id=vm_id)
        return host, int(port)

    console.console_endpoint = synthetic_endpoint


_redirect()
