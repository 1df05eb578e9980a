"""HTTP through the portal's ASGI application (``portal.asgi``, as uvicorn serves it): the
synchronous middleware chain of ``portal.asgi_http`` is the whole chain — security
headers, language, CSRF, sessions and authentication all apply."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from portal.asgi import application
from tests.asgi_request import asgi_request

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
