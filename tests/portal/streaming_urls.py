"""A URL configuration for ``test_asgi_http``: one streaming view whose generator hands
out a line only once the client has taken the one before (``state``)."""

from __future__ import annotations

import threading

from django.http import StreamingHttpResponse
from django.urls import path


class Lines:
    """What the view's generator and the test share, across their threads."""

    def __init__(self):
        self.taken = threading.Event()  # set by the client for each line it receives
        self.stalled = False  # a line was not taken in time
        self.closed = False  # the generator was closed (ended or abandoned)
        self.made = 0


state = Lines()


def _lines(count: int | None):
    try:
        while count is None or state.made < count:
            if state.made and not state.taken.wait(5):
                state.stalled = True
                return
            state.taken.clear()
            state.made += 1
            yield f"line {state.made}\n".encode()
    finally:
        state.closed = True


def lines(request):
    count = request.GET.get("count")
    return StreamingHttpResponse(_lines(int(count) if count else None), content_type="text/plain")


urlpatterns = [path("lines/", lines)]
