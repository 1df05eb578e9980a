"""The Content-Security-Policy header: every page, API answer and admin page gets it; it
runs scripts from the portal's own files only; the workload log alone may be framed, by
the portal itself; the single sign-on provider is a place forms may go."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from tests.compute.test_views_workloads import make
from tests.compute.test_views_workloads import world as world  # noqa: F401 - a fixture

pytestmark = [pytest.mark.unit, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]


def directives(response) -> dict[str, list[str]]:
    """The response's policy as {directive: [sources]}; fails when it has none."""
    header = response.headers.get("Content-Security-Policy")
    assert header, f"{response.request['PATH_INFO']}: no Content-Security-Policy"
    policy = {}
    for part in header.split(";"):
        name, *sources = part.split()
        policy[name] = sources
    return policy


def assert_strict(policy: dict[str, list[str]], *, frame_ancestors: str = "'none'") -> None:
    assert policy["default-src"] == ["'self'"]
    # Scripts: our files, and an inline block only with this response's nonce.
    assert policy["script-src"][0] == "'self'"
    assert all(s.startswith("'nonce-") for s in policy["script-src"][1:]), policy["script-src"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["frame-ancestors"] == [frame_ancestors]


def web(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_pages_api_answers_and_the_admin_carry_the_policy(demo, api):
    bob = web(demo.bob)
    for path in ("/", "/t/acme/vms/", "/profile/"):
        response = bob.get(path)
        assert response.status_code == 200, path
        assert_strict(directives(response))
    assert_strict(directives(Client().get("/login/")))
    assert_strict(directives(api(demo.bob).get("/api/v1/tenants/")))
    admin = web(demo.admin)
    for path in ("/admin/", "/admin/compute/host/", "/staff/migrations/"):
        response = admin.get(path)
        assert response.status_code == 200, path
        assert_strict(directives(response))


def test_the_api_docs_run_swagger_ui_from_files_not_an_inline_script(demo):
    page = Client().get("/api/v1/docs/")
    assert_strict(directives(page))
    html = page.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    script = re.search(r'<script src="([^"]*script=[^"]*)"', html).group(1)
    start = Client().get(script.replace("&amp;", "&"))
    assert start.status_code == 200
    assert start["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in start.content.decode()


def test_only_the_workload_log_may_be_framed_and_only_by_the_portal(world):  # noqa: F811
    make(world, replicas=1)
    carol = web(world.carol)
    assert_strict(directives(carol.get("/t/acme/workloads/web/logs/")), frame_ancestors="'self'")
    assert_strict(directives(carol.get("/t/acme/workloads/web/")))


def test_a_page_that_uses_the_nonce_names_it_and_others_do_not(rf, settings):
    from django.http import HttpResponse

    from portal.csp import CSPMiddleware

    def view(request):
        return HttpResponse(f'<script nonce="{request.csp_nonce}"></script>')

    request = rf.get("/")
    response = CSPMiddleware(view)(request)
    nonce = re.search(r'nonce="([^"]+)"', response.content.decode()).group(1)
    assert f"'nonce-{nonce}'" in directives(response)["script-src"]
    plain = CSPMiddleware(lambda request: HttpResponse("x"))(rf.get("/"))
    assert directives(plain)["script-src"] == ["'self'"]


def test_forms_may_go_to_the_single_sign_on_provider(demo, settings):
    providers = {**settings.SOCIALACCOUNT_PROVIDERS}
    providers["openid_connect"] = {
        **providers["openid_connect"],
        "APPS": [
            {
                "provider_id": "sso",
                "name": "Single sign-on",
                "client_id": "isotope",
                "secret": "s",
                "settings": {"server_url": "https://id.example.com:8443/realms/x"},
            }
        ],
    }
    settings.SOCIALACCOUNT_PROVIDERS = providers
    policy = directives(Client().get("/login/"))
    assert policy["form-action"] == ["'self'", "https://id.example.com:8443"]
    # A provider whose sign-in pages are on another origin: that one is named too.
    settings.ISOTOPE_CSP_FORM_ACTION = ["https://login.example.com"]
    policy = directives(Client().get("/login/"))
    assert policy["form-action"] == [
        "'self'",
        "https://id.example.com:8443",
        "https://login.example.com",
    ]


def test_no_template_has_an_inline_script_or_event_handler():
    """json_script data blocks (type="application/json") are not run and are allowed."""
    found = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        html = path.read_text()
        for match in re.finditer(r"<script\b([^>]*)>", html):
            attrs = match.group(1)
            if "src=" not in attrs and 'type="application/json"' not in attrs:
                found.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
        for match in re.finditer(r"\son[a-z]+\s*=", html):
            found.append(f"{path.relative_to(ROOT)}: {match.group(0).strip()}")
        if "javascript:" in html:
            found.append(f"{path.relative_to(ROOT)}: javascript: URL")
    assert not found, "\n".join(found)
