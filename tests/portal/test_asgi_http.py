"""HTTP through the portal's ASGI application (``portal.asgi``, as uvicorn serves it): the
synchronous middleware chain of ``portal.asgi_http`` is the whole chain — security
headers, language, CSRF, sessions and authentication all apply."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core import signals
from django.test import override_settings

from portal.asgi import application
from portal.asgi_http import RequestThreads, SyncChainASGIHandler
from tests.asgi_request import asgi_request
from tests.portal import streaming_urls

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]


def request(method: str, path: str, body: bytes = b"", headers=()):
    # On an event loop of its own, in a thread of its own: the browser tests leave
    # Playwright's loop running in the main thread.
    call = asgi_request(application, method, path, body, headers)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call).result()


def test_a_page_gets_every_middlewares_headers_in_the_browsers_language():
    status, head, body = request("GET", "/login/", headers=[(b"accept-language", b"zh-Hans")])
    assert status == 200
    assert head["x-frame-options"] == ["DENY"]
    assert head["x-content-type-options"] == ["nosniff"]
    assert head["content-language"] == ["zh-hans"]
    assert any(cookie.startswith("csrftoken=") for cookie in head["set-cookie"])
    assert "登录".encode() in body


def test_a_post_without_its_csrf_token_is_refused_and_health_answers():
    status, _, _ = request(
        "POST",
        "/login/",
        body=b"login=admin&password=x",
        headers=[(b"content-type", b"application/x-www-form-urlencoded")],
    )
    assert status == 403
    assert request("GET", "/healthz")[0] == 200


def test_an_api_call_without_a_token_is_401_as_json():
    status, head, body = request("GET", "/api/v1/tenants/")
    assert status in (401, 403)
    assert head["content-type"][0].startswith("application/")
    assert b"problems" in body


class _Recording(SyncChainASGIHandler):
    """The portal's handler, noting the thread each request's chain ran on and, when a
    test asks, holding each chain at a barrier."""

    def __init__(self):
        super().__init__(RequestThreads())
        self.threads_used: list[threading.Thread] = []
        self.hold: threading.Barrier | None = None

    def get_response(self, request):
        self.threads_used.append(threading.current_thread())
        if self.hold is not None:
            self.hold.wait(timeout=10)
        return super().get_response(request)


def _in_a_loop(call):
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call).result()


def test_requests_one_after_another_reuse_one_thread():
    handler = _Recording()

    async def ten():
        return [await asgi_request(handler, "GET", "/healthz") for _ in range(10)]

    assert [status for status, _, _ in _in_a_loop(ten())] == [200] * 10
    assert handler.threads.started == 1
    assert len(set(handler.threads_used)) == 1


def test_two_requests_at_once_run_on_two_threads_and_neither_waits_for_the_other():
    handler = _Recording()
    # Each request's chain waits for the other's: on one shared thread the barrier
    # would break after its timeout and both would fail.
    handler.hold = threading.Barrier(2)

    async def two():
        return await asyncio.gather(
            asgi_request(handler, "GET", "/healthz"), asgi_request(handler, "GET", "/healthz")
        )

    assert [status for status, _, _ in _in_a_loop(two())] == [200, 200]
    assert len(set(handler.threads_used)) == 2
    assert handler.threads.started == 2


class _CountingThreads(RequestThreads):
    """Request threads that count the calls handed over to them."""

    def __init__(self):
        super().__init__()
        self.handed = 0

    def lend(self):
        if self._idle:
            return self._idle.pop()
        self.started += 1
        threads = self

        class Counting(ThreadPoolExecutor):
            def submit(self, fn, /, *args, **kwargs):
                threads.handed += 1
                return super().submit(fn, *args, **kwargs)

        return Counting(max_workers=1)


@pytest.fixture
def noted():
    """What a request did in order, with the thread of each signal: its signals
    (``request_started``, ``request_finished``) and the messages it sent."""
    order: list[tuple[str, threading.Thread | None]] = []

    def started(**kwargs):
        order.append(("started", threading.current_thread()))

    def finished(**kwargs):
        order.append(("finished", threading.current_thread()))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield order
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


def _noting(handler, order):
    async def app(scope, receive, send):
        async def send_noted(message):
            order.append((message["type"], None))
            await send(message)

        await handler(scope, receive, send_noted)

    return app


def test_a_whole_response_takes_one_hand_over_and_gives_its_connection_back_before_it_is_sent(
    noted,
):
    """The request's synchronous part (its start, the chain, its close, which gives the
    database connection back) is one call to the request's thread, not three."""
    threads = _CountingThreads()
    handler = _Recording()
    handler.threads = threads
    status, _, body = _in_a_loop(asgi_request(_noting(handler, noted), "GET", "/healthz"))
    assert status == 200
    assert [step for step, _ in noted] == [
        "started",
        "finished",
        "http.response.start",
        "http.response.body",
    ]
    (chain_thread,) = handler.threads_used
    assert [thread for step, thread in noted if thread] == [chain_thread, chain_thread]
    assert threads.handed == 1


def _stream(handler, path: str, order: list, leave_after: int | None = None):
    """GET ``path``; the client takes each body part (``streaming_urls.state.taken``)
    and, with ``leave_after``, goes away once it has that many lines. What it is sent
    is noted in ``order``."""
    parts: list[bytes] = []
    gone = asyncio.Event()
    scope_body = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if scope_body:
            return scope_body.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        order.append((message["type"], None))
        if message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            streaming_urls.state.taken.set()
            if leave_after is not None and sum(p.count(b"\n") for p in parts) >= leave_after:
                gone.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"count=3" if leave_after is None else b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    _in_a_loop(asyncio.wait_for(handler(scope, receive, send), 30))
    return parts


@pytest.fixture
def lines():
    streaming_urls.state = streaming_urls.Lines()
    with override_settings(ROOT_URLCONF="tests.portal.streaming_urls"):
        yield streaming_urls


def test_a_streamed_body_reaches_the_client_part_by_part_then_its_response_closes(lines, noted):
    """Each line is sent before the next is made (Django's handler reads a synchronous
    iterator whole first: a followed log would never arrive)."""
    parts = _stream(SyncChainASGIHandler(), "/lines/", noted)
    assert b"".join(parts) == b"line 1\nline 2\nline 3\n"
    assert not lines.state.stalled, "a line was made only after the client had taken it"
    assert lines.state.closed
    steps = [step for step, _ in noted]
    assert steps.count("finished") == 1
    assert steps.index("finished") > max(i for i, s in enumerate(steps) if s.startswith("http."))


def test_a_stream_stops_when_its_client_goes(lines, noted):
    """An endless stream (a log followed) ends when the client goes: its generator is
    closed and the request finishes, once."""
    parts = _stream(SyncChainASGIHandler(), "/lines/", noted, leave_after=3)
    assert b"".join(parts).startswith(b"line 1\nline 2\nline 3\n")
    assert not lines.state.stalled
    assert lines.state.closed
    assert [step for step, _ in noted].count("finished") == 1


def _frozen_after(statements: str, loaded: str) -> dict:
    """In a fresh process: run ``statements``, then how many objects are frozen, how many
    the collector still tracks, whether module ``loaded`` is imported, and after how many
    new objects the youngest generation is collected."""
    import json
    import os
    import subprocess
    import sys

    script = (
        f"import gc, json, sys; {statements}; "
        "print(json.dumps({'frozen': gc.get_freeze_count(), 'tracked': len(gc.get_objects()),"
        f" 'loaded': {loaded!r} in sys.modules, 'young': gc.get_threshold()[0]}}))"
    )
    env = {**os.environ, "ISOTOPE_LOG_LEVEL": "WARNING"}
    env.pop("ISOTOPE_WEB_GC_THRESHOLD", None)  # the default's
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_web_process_keeps_what_it_loaded_out_of_its_full_garbage_collections():
    """A full collection pauses every request of the process for as long as it walks the
    tracked objects; what the web process loaded at start (Django, every view, the URL
    patterns: about 180,000 objects) is frozen, so it walks only what came after."""
    found = _frozen_after("import portal.asgi", "compute.views")
    assert found["loaded"], "the views are loaded at start, not by a first request"
    assert found["frozen"] > 50_000
    assert found["tracked"] < found["frozen"] // 100
    # and its young objects are collected after 20,000 new ones, not Python's 700
    assert found["young"] == 20_000


WORKER_INIT = (
    "from celery.signals import worker_init; "
    "from portal.celery import app; import django; django.setup(); "
    "worker_init.send(sender=type('Worker', (), {{'pool_cls': {pool!r}}})())"
)


def test_a_worker_freezes_what_it_loaded_before_it_forks_its_pool():
    """A worker's main process sends ``worker_init`` before it forks its pool: by then
    every task module is loaded and frozen, so the children's full collections neither
    walk nor write to the objects they inherited (their pages stay shared)."""
    found = _frozen_after(WORKER_INIT.format(pool="prefork"), "compute.tasks.libvirt")
    assert found["loaded"], "the task modules are loaded before the fork"
    assert found["frozen"] > 50_000
    assert found["tracked"] < found["frozen"] // 100


def test_a_worker_of_threads_freezes_nothing():
    """A worker of threads forks nothing; it may run inside a process that has loaded
    other things by then (a test's worker), which must stay collectable."""
    found = _frozen_after(WORKER_INIT.format(pool="threads"), "compute.tasks.libvirt")
    assert found["frozen"] == 0
