"""Single sign-on tests against the real local Ory Hydra (``python3 -m tools.infra oidc up``).

Each test registers its own OAuth2 client (its live server's port is new each time)
and its own provider users, and configures the portal with them the way an operator
would (the ``ISOTOPE_OIDC_*`` settings, or a SocialApp row in Django admin).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests

from tests.conftest import require
from tools.infra import oidc as provider_infra
from tools.infra import read_state

CALLBACK = "/accounts/oidc/sso/login/callback/"


@pytest.fixture(scope="session")
def oidc_provider() -> dict:
    """The running provider's state (issuer, CA file, admin URL), or skip/fail."""
    state = read_state("oidc")
    if state.get("ok"):
        state = provider_infra.status()
    require(bool(state.get("ok")), f"OIDC provider not up: {state.get('reason')}")
    return state


@dataclass
class SSO:
    """One test's view of the provider: its client and helpers to sign in."""

    base: str
    issuer: str
    ca_file: str
    client_id: str
    secret: str
    users: list[str] = field(default_factory=list)

    def user(self, name: str = "", *, groups=(), password: str = "", **extra) -> tuple[str, str]:
        """A provider user with a name unique to this run; returns (name, password)."""
        name = name or f"sso-{secrets.token_hex(3)}"
        password = password or secrets.token_urlsafe(12)
        provider_infra.user_set(name, password, groups=list(groups), **extra)
        self.users.append(name)
        return name, password

    def settings_app(self, **settings_overrides) -> dict:
        """The portal's provider configuration, as the ISOTOPE_OIDC_* variables give it."""
        return {
            "provider_id": "sso",
            "name": "Isotope IdP",
            "client_id": self.client_id,
            "secret": self.secret,
            "settings": {
                "server_url": self.issuer,
                "scope": ["openid", "profile", "email", "groups"],
                "groups_claim": "groups",
                "username_claim": "preferred_username",
                "oauth_pkce_enabled": True,
                **settings_overrides,
            },
        }

    def session(self) -> requests.Session:
        browser = requests.Session()
        browser.verify = self.ca_file  # Hydra's public port: our own CA
        browser.trust_env = False  # or REQUESTS_CA_BUNDLE would replace that CA
        return browser

    def start(self, browser: requests.Session, next_url: str = "") -> requests.Response:
        """Press "Sign in with …" on /login/; follow redirects to the provider's form."""
        page = browser.get(f"{self.base}/login/")
        assert page.status_code == 200
        data = {"csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        if next_url:
            data["next"] = next_url
        return browser.post(
            f"{self.base}/accounts/oidc/sso/login/",
            data=data,
            headers={"Referer": f"{self.base}/login/"},
        )

    def submit(
        self, browser: requests.Session, form_page: requests.Response, name: str, password: str,
        action: str = "login", allow_redirects: bool = True,
    ) -> requests.Response:  # fmt: skip
        """Fill the provider's sign-in form (tools/oidc/login_app.py)."""
        challenge = re.search(r'name="challenge" value="([^"]+)"', form_page.text)
        assert challenge, form_page.text[:500]
        login_url = urljoin(form_page.url, "/login")
        return browser.post(
            login_url,
            data={
                "challenge": challenge.group(1),
                "username": name,
                "password": password,
                "action": action,
            },
            allow_redirects=allow_redirects,
        )

    def sign_in(self, name: str, password: str) -> tuple[requests.Session, requests.Response]:
        browser = self.session()
        form = self.start(browser)
        assert "Isotope identity provider" in form.text, form.text[:500]
        return browser, self.submit(browser, form, name, password)

    def follow_until_callback(self, browser: requests.Session, response) -> str:
        """Follow redirects by hand and stop at the portal's callback URL."""
        while response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if urlsplit(location).path == CALLBACK:
                return location
            response = browser.get(location, allow_redirects=False)
        raise AssertionError(f"no redirect to the callback; ended at {response.url}")


@pytest.fixture
def sso(oidc_provider, live_url, settings) -> SSO:
    """A client registered for this test's live server, configured in the portal."""
    client_id = f"isotope-test-{secrets.token_hex(4)}"
    client = provider_infra.client_create(
        client_id,
        redirect_uris=[f"{live_url}{CALLBACK}"],
        post_logout_redirect_uris=[f"{live_url}/login/"],
        name="Isotope (tests)",
    )
    result = SSO(
        base=live_url,
        issuer=oidc_provider["issuer"],
        ca_file=oidc_provider["ca_file"],
        client_id=client_id,
        secret=client["client_secret"],
    )
    configure(settings, result, result.settings_app())
    # Hydra sends the browser on from its issuer to its login pages, another origin: the
    # portal's forms (SSO button, sign-out) may lead there (README "Content-Security-Policy").
    settings.ISOTOPE_CSP_FORM_ACTION = [oidc_provider["login_url"]]
    return result


def configure(settings, sso: SSO, app: dict | None) -> None:
    """Point the portal at ``app`` (None: no provider from settings)."""
    providers = json.loads(json.dumps(settings.SOCIALACCOUNT_PROVIDERS))
    providers["openid_connect"]["APPS"] = [app] if app else []
    settings.SOCIALACCOUNT_PROVIDERS = providers
    settings.ISOTOPE_OIDC = {**settings.ISOTOPE_OIDC, "ca_file": sso.ca_file}


# --- A token-endpoint proxy that tampers with ID tokens --------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenProxy:
    """Forwards the portal's token requests to Hydra and changes the ID token it answers
    with according to ``mode``: ``none`` (unsigned, ``alg: none``), ``forged`` (a claim
    changed under the old signature), ``swap`` (a genuine token Hydra signed for another
    client, set in ``replacement``), ``delay`` (hold the answer ``delay`` seconds, so a
    short-lived token expires on the way). Every ID token passing is kept in ``seen``."""

    def __init__(self, token_endpoint: str, ca_file: str) -> None:
        self.target = token_endpoint
        self.ca_file = ca_file
        self.mode = ""
        self.replacement = ""
        self.delay = 0.0
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = proxy.forward(body, self.headers)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def forward(self, body: bytes, headers) -> tuple[int, dict]:
        import ssl

        request = urllib.request.Request(self.target, data=body, method="POST")
        for name in ("Content-Type", "Authorization", "Accept"):
            if headers.get(name):
                request.add_header(name, headers[name])
        context = ssl.create_default_context(cafile=self.ca_file)
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        token = answer.get("id_token", "")
        self.seen.append(token)
        answer["id_token"] = self.tamper(token)
        if self.mode == "delay":
            time.sleep(self.delay)
        return status, answer

    def tamper(self, token: str) -> str:
        header, payload, signature = token.split(".")
        claims = json.loads(b64url_decode(payload))
        if self.mode == "none":
            head = json.loads(b64url_decode(header))
            head["alg"] = "none"
            return f"{b64url(json.dumps(head).encode())}.{payload}."
        if self.mode == "forged":
            claims["groups"] = ["platform-admins"]
            return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"
        if self.mode == "swap":
            return self.replacement
        return token

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_proxy(sso, settings):
    """The portal's token requests go through a ``TokenProxy`` (the discovery document's
    ``token_endpoint`` is overridden in the app's settings, as allauth allows)."""
    discovery = requests.get(
        f"{sso.issuer}/.well-known/openid-configuration", verify=sso.ca_file, timeout=10
    ).json()
    proxy = TokenProxy(discovery["token_endpoint"], sso.ca_file)
    app = sso.settings_app(openid_configuration_overrides={"token_endpoint": proxy.url})
    configure(settings, sso, app)
    yield proxy
    proxy.close()


def query_of(url: str) -> dict:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


@pytest.fixture(autouse=True)
def clean_allauth_counters():
    """allauth's rate-limit counters and used TOTP codes live in the real Redis cache
    and outlast a test's database: wipe them around each test."""
    from django.core.cache import cache

    from monitoring.live import redis_client

    def wipe() -> None:
        client = redis_client()
        keys = list(client.scan_iter(cache.make_key("allauth*"), count=500))
        if keys:
            client.delete(*keys)

    wipe()
    yield
    wipe()
