"""Django's ASGI handler for HTTP with the middleware chain and the view run synchronously,
in one worker thread per request, taken from a pool of idle threads.

Every view of the portal is synchronous. Django's own ASGI handler builds an asynchronous
middleware chain and then runs each ``MiddlewareMixin`` middleware's request and response
steps, and the view, through ``sync_to_async``: a dozen hand-overs between the event loop
and threads for one request. Here the chain is the synchronous one WSGI uses, entered
once per request, together with the ``request_started`` receivers and the close of a
whole response: one hand-over to the request's thread per request, where Django's
handler makes three (``SyncChainASGIHandler.handle``). Reading the body and sending the
response stay Django's; a streaming body is sent part by part as it is made.

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

import asyncio
import collections
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.urls import set_script_prefix


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

    async def handle(self, scope, receive, send):
        """As Django's ``handle``, with one hand-over to the request's thread where Django
        makes three: the ``request_started`` receivers, the chain and, for a response
        whose body is whole (not streaming), its ``close()`` — whose ``request_finished``
        receivers give the database connection back — run there in one call, before the
        response is sent. A streaming response is sent as Django sends it, stopped when
        the client goes, and closed after.

        Django also listens for the client's disconnect while the view runs, to cancel an
        asynchronous view; it cannot stop a synchronous one. Here the listener runs only
        while a streaming body is sent: a whole response to a client that went is
        dropped by the server (uvicorn's ``send`` does nothing once it is disconnected).
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:
                await signals.request_started.asend(sender=self.__class__, scope=scope)
                await self.send_response(error_response, send)
                await sync_to_async(error_response.close, thread_sensitive=True)()
                return
            response = await sync_to_async(self._serve, thread_sensitive=True)(scope, request)
            if response.streaming:
                await self._send_streaming(response, receive, send)
            else:
                await self.send_response(response, send)
        finally:
            body_file.close()

    def _serve(self, scope, request):
        """The request's synchronous part, on its thread: start, chain, and the close of a
        whole response."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        response = self.get_response(request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if not response.streaming:
            response.close()
        return response

    async def _send_streaming(self, response, receive, send):
        """Send a streaming body as it is made until it ends or the client goes (then it
        is cancelled), then close the response on the request's thread.

        A synchronous iterator (a view's generator, a file) is read one part at a time
        on the request's thread, each part sent before the next is read. Django reads it
        whole before sending anything (``sync_to_async(list)``): a log followed until
        the client goes would never be sent."""
        if not response.is_async:
            parts = response.streaming_content
            end = object()

            async def each_part():
                while (
                    part := await sync_to_async(next, thread_sensitive=True)(parts, end)
                ) is not end:
                    yield part

            response.streaming_content = each_part()

        async def body():
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client went while it was being sent

        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(body()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if not task.done():
                    task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, RequestAborted):
                    pass
        finally:
            # After a part still being read when the client went (the same thread).
            await sync_to_async(response.close, thread_sensitive=True)()

    async def get_response_async(self, request):
        # Not called by ``handle`` above; for any caller of Django's API, the chain on
        # the request's thread (Django's own would await the synchronous chain).
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def get_asgi_application() -> SyncChainASGIHandler:
    """As ``django.core.asgi.get_asgi_application``, with the handler above."""
    import django

    django.setup(set_prefix=False)
    return SyncChainASGIHandler()
