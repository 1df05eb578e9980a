"""Shared fixtures: demo tenants and users, API clients, an ASGI live server, Chromium.

The suite runs against PostgreSQL and Redis started by ``make test`` (DATABASE_URL,
REDIS_URL). Infrastructure tiers read ``var/infra/*.json`` written by ``tools.infra``;
when infrastructure is required (``CI`` or ``ISOTOPE_REQUIRE_INFRA``, read only through
``tools.infra.infra_required``) a missing piece fails instead of skipping, and
``tests/strict.py`` fails skipped tests and, in CI, tiers without a passing test.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from tenants import services
from tenants.choices import Role
from tools.infra import infra_required

pytest_plugins = ["tests.strict"]

# Playwright's sync API runs an event loop in the test thread; Django's ORM calls made by
# the test itself are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts"
PASSWORD = "correct-horse-battery-staple"
# How long a tiny TCG guest may take from start to its shell prompt before a test gives
# up. Only a bound that ends a broken run, never a goal: measured 30.8 s at load average
# 19 and 30.1 s at 14 on this 2-core machine (tests/infra/test_libvirt_smoke.py prints it),
# against the under-5-s budget the smoke test used to assert on an idle machine.
GUEST_BOOT_TIMEOUT = 180.0
CHROMIUM = os.environ.get("ISOTOPE_CHROMIUM", "/usr/bin/chromium")
# True in the live server's thread and everything it spawns (see ``live_server``).
_SERVING: contextvars.ContextVar[bool] = contextvars.ContextVar("isotope_serving", default=False)


def require(condition: bool, reason: str) -> None:
    """Skip a test whose infrastructure is missing; fail instead when it is required."""
    if condition:
        return
    if infra_required():
        pytest.fail(f"required infrastructure missing: {reason}")
    pytest.skip(reason)


def postgres_only() -> None:
    from django.db import connection

    require(connection.vendor == "postgresql", "needs PostgreSQL (set DATABASE_URL)")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, plus a last check before it is dropped.

    PostgreSQL refuses to drop a database another session still uses, which pytest-django
    only reports as a warning at the very end. Sessions left open by a thread the suite
    started (a server, a watch, a worker that outlived its test) are named in a warning
    here, with their last query, then ended so that the drop succeeds.
    """
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, state, left(query, 200), pg_terminate_backend(pid)"
                " FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            leftovers = cursor.fetchall()
    if leftovers:
        names = "; ".join(f"pid {pid} ({state}): {query!r}" for pid, state, query, _ in leftovers)
        warnings.warn(
            f"{len(leftovers)} database session(s) left open at the end of the run, ended so "
            f"that the test database can be dropped: {names}",
            pytest.PytestWarning,
            stacklevel=1,
        )


# --- Data ------------------------------------------------------------------------------
class Demo:
    """The namespace ``demo`` returns."""


def make_demo() -> Demo:
    """Create tenants acme and globex with the demo users; return a namespace of them."""
    User = get_user_model()
    d = Demo()
    d.acme = services.tenant_create(actor=None, slug="acme", name="ACME Corporation")
    d.globex = services.tenant_create(actor=None, slug="globex", name="Globex")
    d.admin = User.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    for username, tenant, role in [
        ("alice", d.acme, Role.ADMIN),
        ("bob", d.acme, Role.OPERATOR),
        ("carol", d.acme, Role.VIEWER),
        ("dave", d.globex, Role.ADMIN),
    ]:
        user = User.objects.create_user(
            username, f"{username}@example.com", PASSWORD, first_name=username.title()
        )
        services.membership_add(actor=None, tenant=tenant, user=user, role=role)
        setattr(d, username, user)
    d.outsider = User.objects.create_user("erin", "erin@example.com", PASSWORD)
    return d


@pytest.fixture
def demo(db):
    """Tenants acme and globex with the demo users; returns a namespace of objects."""
    return make_demo()


def shared_data(django_db_blocker, make):
    """For a module- or class-scoped fixture (``yield from shared_data(blocker, make)``):
    the objects ``make()`` returns, made once and seen by every test of that scope, gone
    after it, like Django's ``setUpTestData``.

    The rows are made in a transaction left open for the whole scope and rolled back at
    its end. Each test's ``db`` fixture (pytest-django, not transactional) runs the test
    in a savepoint inside it and rolls that back, so what one test changes, the next
    does not see. Only for scopes whose tests all use ``db``, never ``transactional_db``
    (a flush inside the transaction) or threads with connections of their own (they
    would not see the uncommitted rows). As in a ``TestCase``, ``on_commit`` callbacks
    of the setup never run. Give each test a deep copy of the objects (a test may change
    them in memory).
    """
    from django.db import transaction

    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            data = make()
        except BaseException:
            atomic.__exit__(*sys.exc_info())
            raise
    try:
        yield data
    finally:
        with django_db_blocker.unblock():
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


@pytest.fixture
def staff(demo):
    """A Django test client signed in as the platform admin of the demo."""
    from django.test import Client

    client = Client()
    client.force_login(demo.admin)
    return client


def messages_of(response) -> list[str]:
    """The messages a response queued for the next page (Django's messages)."""
    from django.contrib.messages import get_messages

    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def api():
    """An API client factory: ``api(user)`` is logged in as ``user`` (or anonymous)."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture(autouse=True)
def clean_redis_state():
    """Rate-limit counters and provision requests live in the real Redis and outlast a
    test's database: one test's failed tokens or console tickets must not throttle the
    next, nor a provision flag armed by a test without a worker hold the next test's VMs
    (``compute.services.dispatch``), nor a resync frame shared in this process stand for
    another test's stream (``monitoring.consumers.SNAPSHOTS``)."""
    from django.core.cache import cache

    from compute.services.dispatch import provision_requests_clear
    from monitoring.consumers import SNAPSHOTS
    from monitoring.live import redis_client

    def wipe() -> None:
        client = redis_client()
        keys = list(client.scan_iter(cache.make_key("throttle_*"), count=500))
        if keys:
            client.delete(*keys)
        provision_requests_clear()
        # Resync frames this process shared: the next test's streams count from 0 again.
        SNAPSHOTS.clear()

    wipe()
    yield
    wipe()


@pytest.fixture(autouse=True)
def default_language():
    """Django's test client leaves the language of a test's last request active in the
    thread (its middleware activates one per request; nothing deactivates it): a test
    whose last request asked for Chinese made the next test's services answer in
    Chinese. Each test starts and ends in the default language."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


# --- Live ASGI server -------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(app=None) -> Iterator[str]:
    """Serve ``app`` (default: the portal's ASGI application) with uvicorn in a thread;
    yield its base URL.

    Every database connection opened on the server's behalf (its event loop and the
    threads ``sync_to_async`` hands work to) stays open from request to request, as a
    deployment's pooled ones do, instead of one opened per request (the suite's
    ``CONN_MAX_AGE`` is 0), and is closed when the server stops: one left open keeps
    PostgreSQL from dropping the test database at the end of the run.
    """
    import uvicorn
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.db.backends.signals import connection_created

    from portal.workers import uvicorn_options

    opened: list = []

    def track(sender, connection, **kwargs) -> None:
        # The flag is set in the server thread's context, which asyncio tasks and
        # sync_to_async threads inherit; Celery worker threads in this process lack it.
        if _SERVING.get():
            connection.close_at = None  # kept, not closed at the request's end
            opened.append(connection)

    def serve() -> None:
        _SERVING.set(True)
        server.run()

    if app is None:
        from portal.asgi import application

        app = ASGIStaticFilesHandler(application)
    port = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **uvicorn_options(),
    )
    server = uvicorn.Server(config)
    connection_created.connect(track, weak=False)
    thread = threading.Thread(target=serve, name=f"live-server-{port}", daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: server.started or not thread.is_alive(), 30, message="uvicorn did not start"
        )
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited at start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        connection_created.disconnect(track)
        for wrapper in opened:
            raw = wrapper.connection
            if raw is not None and not raw.closed:
                raw.close()
            # The request threads outlive this server (the portal keeps idle ones): the
            # next server's request in one of them connects afresh.
            wrapper.connection = None
    if thread.is_alive():
        raise RuntimeError("uvicorn did not stop within 30 s")


@pytest.fixture
def live_url(transactional_db):
    """The portal served by uvicorn in a thread (see ``live_server``); yields its URL.

    Uses the test database (transactional, so the server thread sees committed rows).
    """
    with live_server() as url:
        yield url


# --- Browser ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    require(Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser, request):
    """``new_page()`` opens a page in a fresh context (its own cookies).

    Each page gets a screenshot saved under var/test-artifacts/ when the test fails.
    """
    contexts = []

    def make(viewport=None):
        context = browser.new_context(viewport=viewport or {"width": 1360, "height": 860})
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for index, context in enumerate(contexts):
        if failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for n, page in enumerate(context.pages):
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{index}-{n}.png"))
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After every test that used the database, before it is emptied or rolled back:
    each host's placed counters equal the sums of its VM and migration rows (the
    triggers of compute's migration 0034 kept them through whatever the test did).
    A test whose paths let them drift errors at its teardown, after its own teardown."""
    try:
        miscounted = _hosts_miscounted(item)
    except Exception as error:  # the test's own teardown must run all the same
        miscounted = {"(the check itself failed)": repr(error)}
    result = yield
    if miscounted:
        raise AssertionError(f"hosts' placed counters (counted, summed) drifted: {miscounted}")
    return result


def _hosts_miscounted(item) -> dict:
    fixtures = getattr(getattr(item, "_request", None), "_fixture_defs", {})
    if "_django_db_helper" not in fixtures or "migrate_to" in fixtures:
        return {}  # no database, or one of its own at an older schema
    from django.db import connection, transaction

    from compute import scheduler

    if connection.needs_rollback or (
        connection.connection is not None and not connection.is_usable()
    ):
        return {}
    with transaction.atomic():
        scheduler.count_own()  # a test's VMs not yet committed count too
        miscounted = scheduler.hosts_miscounted()
        transaction.set_rollback(True)  # leave the test's transaction as it was
    return miscounted


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Every item gets its own node id. schemathesis 4 names each API operation's item
    ``test[GET /api/v1/...]`` but leaves it the test function's node id, which pytest 9
    reads from the item's structured id (``item._id``), not from its name: 103 fuzz items
    shared one id, so ``--durations``, reruns and failures could not say which operation
    it was, and pytest-xdist (which hands out work by node id) would run one of them.
    The bracket of the name becomes the id's parameters, as pytest's own parametrize."""
    for item in items:
        node_id = item._id
        base, bracket, params = item.name.partition("[")
        if bracket and node_id.params is None and node_id.names and node_id.names[-1] == base:
            item._id = dataclasses.replace(node_id, params=params.removesuffix("]"))


def login(page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the login form as a person would."""
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/")


def requests_held(page, url: str, method: str = "") -> list:
    """Hold the page's requests to ``url`` (only ``method``'s when given; the others go
    on) unanswered, as a slow server would: the returned list fills as they are sent,
    and the test lets one through with ``route.continue_()``. Wait for the first with
    :func:`first_held`."""
    held = []

    def hold(route) -> None:
        if method and route.request.method != method:
            route.continue_()
        else:
            held.append(route)

    page.route(url, hold)
    return held


def first_held(page, held: list):
    """Wait until a request of :func:`requests_held` is sent; returns it."""
    while not held:
        page.wait_for_timeout(20)  # Playwright delivers the route while it waits
    return held[0]


def live_subscribed(page, tenant: str = "acme") -> None:
    """Wait until the page's websocket follows the tenant's stream (live.js)."""
    page.wait_for_function(
        "tenant => window.Isotope.live.streams.has('tenant.' + tenant)", arg=tenant
    )


# --- Celery -----------------------------------------------------------------------------
@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker (threads) consuming every queue from the test Redis.

    Tasks see the test database, so tests that use it are transactional. At the end the
    worker finishes the tasks it is running (a pool's reconcile may be provisioning
    members) for up to 90 s, a bound for a loaded machine, not a speed: when it gave up
    after 30 s, its thread ran on into the next test's setup, whose data it then saw.
    """
    from portal.celery import app

    app.conf.task_always_eager = False
    queues = ["default", "libvirt", "kubernetes", "monitoring", "storage"]
    # Tasks left by an earlier test (e.g. a delayed stop enforcement) must not run here.
    queues_purge(queues)
    with threads_worker(queues, shutdown_timeout=90) as worker:
        yield worker


def queues_purge(queues: list[str]) -> None:
    """Drop every message waiting on ``queues`` in the test Redis."""
    from portal.celery import app

    with app.connection_for_write() as conn:
        for queue in queues:
            conn.default_channel.queue_purge(queue)


def queued(queue: str) -> int:
    """How many messages wait on ``queue`` (0 when Redis holds no list for it)."""
    from kombu.exceptions import ChannelError

    from portal.celery import app

    with app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(queue, passive=True).message_count
        except ChannelError:
            return 0


def threads_worker(queues: list[str], *, shutdown_timeout: float = 30, **options):
    """A real Celery worker of two threads in this process, consuming ``queues`` from the
    test Redis (a context manager; ``options`` go to Celery's ``start_worker``)."""
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app

    return start_worker(
        app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        shutdown_timeout=shutdown_timeout,
        queues=queues,
        **options,
    )


def wait_for(predicate, timeout: float = 15, interval: float = 0.05, message: str = ""):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(message or f"condition not met within {timeout}s")
        time.sleep(interval)


def pytest_configure(config):
    """Fast password hashing: the suite creates many users; security is not under test.
    And a CPython 3.11.7 bug drawing a failure's traceback stays one failed test
    (tests/ast_guard.py)."""
    from django.conf import settings

    from tests import ast_guard

    ast_guard.install()

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
