"""The web tier as ``make run`` starts it: the Procfile's ``web`` command (gunicorn with
``deploy/gunicorn.conf.py``) runs ISOTOPE_WEB_PROCESSES uvicorn processes on one port,
serves the API and websockets from all of them, delivers a live event published in
another process to a socket on any of them, and keeps serving when one is killed.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection
from websockets.sync.client import connect

from monitoring.services import event_publish
from tenants import services
from tests.conftest import _free_port, postgres_only, wait_for
from tests.portal.test_websocket_origin import session_cookie

pytestmark = [pytest.mark.unit, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def procfile_command(role: str) -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == role:
            return shlex.split(command)
    raise AssertionError(f"no {role} in the Procfile")


def start_web_tier(env: dict, output) -> subprocess.Popen:
    """The Procfile's web command in a session of its own, its output to ``output``."""
    return subprocess.Popen(
        procfile_command("web"),
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def workers_of(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def database_url_here() -> str:
    """DATABASE_URL pointed at the database this test runs in."""
    url = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture
def web_tier():
    """The Procfile's web command with two processes on a free port; yields (url, master)."""
    postgres_only()
    port = _free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "ISOTOPE_WEB_BIND": f"127.0.0.1:{port}",
        "ISOTOPE_WEB_PROCESSES": "2",
        "DATABASE_URL": database_url_here(),
        "ISOTOPE_LOG_LEVEL": "WARNING",
    }
    log = open(ROOT / "var" / "test-web-tier.log", "w")  # noqa: SIM115 - closed below
    master = start_web_tier(env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: len(workers_of(master.pid)) == 2, 60, message="two web processes")
        wait_for(lambda: get(url, "/api/v1/schema/", None) == 200, 60, message="web tier")
        yield url, master
    finally:
        os.killpg(master.pid, signal.SIGTERM)
        try:
            master.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(master.pid, signal.SIGKILL)
            master.wait()
        log.close()


def get(base: str, path: str, token: str | None) -> int:
    headers = {"Authorization": f"Token {token}"} if token else {}
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_the_web_tier_runs_n_processes_that_all_serve_and_outlive_a_killed_one(demo, web_tier):
    url, master = web_tier
    first = workers_of(master.pid)
    _, token = services.token_create(user=demo.carol, name="web-tier")
    listing = "/api/v1/tenants/acme/virtualmachines/"
    # Connections are spread by the kernel over both processes; each answers the API.
    assert [get(url, listing, token) for _ in range(20)] == [200] * 20

    # A socket on the tier gets an event published here, in another process, through
    # the channel layer (whichever web process holds it).
    origin = url
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_cookie(demo.carol)}"
    with connect(
        url.replace("http://", "ws://") + "/ws/",
        origin=origin,
        additional_headers={"Cookie": cookie},
        open_timeout=10,
    ) as ws:
        # The client offers permessage-deflate, as browsers do; the tier declines it
        # (ISOTOPE_WS_DEFLATE is off by default: see portal.workers).
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send(json.dumps({"type": "subscribe", "tenant": "acme"}))
        subscribed = json.loads(ws.recv(timeout=10))
        assert subscribed["type"] == "subscribed"
        event_publish(tenant=demo.acme, kind="vm", name="web1", reason="Started", message="up")
        message = json.loads(ws.recv(timeout=10))
        assert (message["type"], message["stream"]) == ("event", "tenant.acme")
        assert message["seq"] == subscribed["seq"] + 1
        assert message["data"]["reason"] == "Started"

    # One process dies mid-load: the other keeps answering (a request that was on the
    # dead one fails once and is retried, as a client behind a proxy would), and the
    # master starts a replacement.
    victim = sorted(first)[0]
    answers = []
    for n in range(40):
        if n == 10:
            os.kill(victim, signal.SIGKILL)
        status = get(url, listing, token)
        if status != 200:
            status = get(url, listing, token)
        answers.append(status)
    assert answers == [200] * 40
    wait_for(
        lambda: len(workers_of(master.pid)) == 2 and victim not in workers_of(master.pid),
        60,
        message="gunicorn replaces the killed process",
    )
    assert master.poll() is None
