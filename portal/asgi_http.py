"""Django's ASGI handler for HTTP with the middleware chain and the view run synchronously,
in one worker thread per request.

Every view of the portal is synchronous. Django's own ASGI handler builds an asynchronous
middleware chain and then runs each ``MiddlewareMixin`` middleware's request and response
steps, and the view, through ``sync_to_async``: a dozen hand-overs between the event loop
and threads for one request. Here the chain is the synchronous one WSGI uses, entered
once per request; what is asynchronous (reading the body, sending the response,
streaming) stays Django's. ``bench/asgi_handler.py`` measures the three handlers side by
side (CPU per request, medians, bench/README.md): ``GET /healthz`` 5.6 ms with Django's,
3.8 ms with this one, 1.4 ms with WSGI's; the trivial DRF view 8.8, 7.2 and 4.6 ms.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        # The synchronous chain, whatever Django asks for.
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        # Thread-sensitive, as Django runs a synchronous view: inside the request's
        # ThreadSensitiveContext (ASGIHandler.handle) that is one thread per request,
        # the same thread for the whole chain and the response's close().
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application() -> SyncChainASGIHandler:
    """As ``django.core.asgi.get_asgi_application``, with the handler above."""
    import django

    django.setup(set_prefix=False)
    return SyncChainASGIHandler()
