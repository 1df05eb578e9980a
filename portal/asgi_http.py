"""Django's ASGI handler for HTTP with the middleware chain and the view run synchronously,
in one worker thread per request, taken from a pool of idle threads.

Every view of the portal is synchronous. Django's own ASGI handler builds an asynchronous
middleware chain and then runs each ``MiddlewareMixin`` middleware's request and response
steps, and the view, through ``sync_to_async``: a dozen hand-overs between the event loop
and threads for one request. Here the chain is the synchronous one WSGI uses, entered
once per request; what is asynchronous (reading the body, sending the response,
streaming) stays Django's.

Django also gives each request a new thread (a ``ThreadSensitiveContext`` of its own),
and asgiref joins it from yet another new thread when the request ends: two threads
started per request. Here a request borrows a single-thread executor from
``RequestThreads`` (asgiref's ``ThreadSensitiveContext(executor=…)``, which leaves the
executor to its owner) and gives it back when it ends. A request still has one thread to
itself, as in Django, and a thread serves one request at a time, as in a WSGI server.

``bench/asgi_handler.py`` measures the handlers side by side (CPU per request, medians,
bench/README.md).
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler


class RequestThreads:
    """Idle single-thread executors lent to requests, at most ``keep`` of them kept idle."""

    def __init__(self, keep: int = 64):
        self.keep = keep
        self._idle: collections.deque[ThreadPoolExecutor] = collections.deque()
        self.started = 0  # threads started so far (tests, benchmarks)

    def lend(self) -> ThreadPoolExecutor:
        try:
            return self._idle.pop()
        except IndexError:
            self.started += 1
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="isotope-request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        # Idle: Django's handler returns only after the request's last call on this
        # thread has run (the response's close(), or request_finished when the client
        # went away, which queues behind a view still running).
        if len(self._idle) < self.keep:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)

    def idle(self) -> int:
        return len(self._idle)


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self, threads: RequestThreads | None = None):
        super().__init__()
        self.threads = threads or RequestThreads()

    def load_middleware(self, is_async=False):
        # The synchronous chain, whatever Django asks for.
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.threads.lend()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(executor)

    async def get_response_async(self, request):
        # Thread-sensitive, as Django runs a synchronous view: inside the request's
        # context (above) that is the request's thread, the same for the whole chain,
        # the request_started receivers and the response's close().
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application() -> SyncChainASGIHandler:
    """As ``django.core.asgi.get_asgi_application``, with the handler above."""
    import django

    django.setup(set_prefix=False)
    return SyncChainASGIHandler()
