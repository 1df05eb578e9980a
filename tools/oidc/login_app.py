"""The login, consent and logout pages of the local Ory Hydra (stdlib only).

Hydra implements OpenID Connect and OAuth 2.0 but keeps no users: it sends the browser
to the "login", "consent" and "logout" URLs of an app like this one, which checks the
user and tells Hydra's admin API who they are and which claims go into the ID token.

Users live in a JSON file (``--users``), read again on every request so that tests can
add users or change their groups between two sign-ins::

    {"alice": {"password_sha256": "<salt>$<hex>", "email": "...", "name": "...",
               "groups": ["acme-operators"]}}

``python3 -m tools.infra oidc user NAME --password P --groups a,b`` writes it (see
``tools/infra/oidc.py``). The consent step is automatic (a first-party portal): every
requested scope is granted, and the ID token carries ``preferred_username``, ``email``,
``email_verified``, ``name`` and ``groups``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; background: #f3f4f6; margin: 0;
       display: flex; min-height: 100vh; align-items: center; justify-content: center; }}
main {{ background: #fff; padding: 2rem 2.5rem; border-radius: 8px; width: 22rem;
        box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
h1 {{ font-size: 1.3rem; margin: 0 0 .25rem; }}
p.sub {{ color: #555; margin: 0 0 1.25rem; font-size: .9rem; }}
label {{ display: block; font-size: .85rem; margin: .75rem 0 .25rem; }}
input[type=text], input[type=password] {{ width: 100%; box-sizing: border-box;
        padding: .5rem; border: 1px solid #bbb; border-radius: 4px; font-size: 1rem; }}
.actions {{ display: flex; gap: .5rem; margin-top: 1.25rem; }}
button {{ flex: 1; padding: .55rem; border-radius: 4px; border: 1px solid #1f4fbf;
         font-size: 1rem; cursor: pointer; }}
button.primary {{ background: #2557d6; color: #fff; }}
button.secondary {{ background: #fff; color: #1f4fbf; }}
.error {{ background: #fde8e8; color: #8a1c1c; padding: .5rem .75rem; border-radius: 4px;
          font-size: .9rem; }}
</style></head><body><main>{body}</main></body></html>
"""


def password_hash(password: str, salt: str) -> str:
    """``<salt>$<hex sha256 of salt + password>``: a test provider's users file."""
    return f"{salt}${hashlib.sha256((salt + password).encode()).hexdigest()}"


def password_ok(stored: str, password: str) -> bool:
    salt, _, _ = stored.partition("$")
    return bool(salt) and hmac.compare_digest(stored, password_hash(password, salt))


class App:
    def __init__(self, admin_url: str, users: Path) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.users = users

    def user(self, name: str) -> dict | None:
        try:
            return json.loads(self.users.read_text()).get(name)
        except (OSError, ValueError):
            return None

    def admin(self, method: str, path: str, query: dict, body: dict | None = None) -> dict:
        url = f"{self.admin_url}{path}?{urllib.parse.urlencode(query)}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def claims(self, name: str) -> dict:
        user = self.user(name) or {}
        return {
            "preferred_username": name,
            "email": user.get("email", f"{name}@example.test"),
            "email_verified": True,
            "name": user.get("name", name),
            "groups": list(user.get("groups", [])),
        }


class Handler(BaseHTTPRequestHandler):
    app: App
    server_version = "isotope-oidc-login/1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")

    # -- plumbing
    def _query(self) -> dict:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))

    def _form(self) -> dict:
        length = min(int(self.headers.get("Content-Length") or 0), 65536)
        return dict(urllib.parse.parse_qsl(self.rfile.read(length).decode(errors="replace")))

    def _send(self, status: int, body: str, headers: dict | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, location: str) -> None:
        self._send(302, "", {"Location": location})

    def _page(self, title: str, body: str, status: int = 200) -> None:
        self._send(status, PAGE.format(title=html.escape(title), body=body))

    def _login_form(self, challenge: str, client: str, error: str = "", username: str = ""):
        alert = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        body = f"""<h1>Isotope identity provider</h1>
<p class="sub">Sign in to continue to <b>{html.escape(client)}</b>.</p>{alert}
<form method="post" action="/login">
<input type="hidden" name="challenge" value="{html.escape(challenge)}">
<label for="username">Username</label>
<input type="text" id="username" name="username" value="{html.escape(username)}" autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password">
<div class="actions">
<button class="primary" type="submit" name="action" value="login">Sign in</button>
<button class="secondary" type="submit" name="action" value="deny">Cancel</button>
</div></form>"""
        self._page("Sign in", body, 200 if not error else 401)

    # -- routes
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = urllib.parse.urlsplit(self.path).path
        query = self._query()
        try:
            if path == "/healthz":
                return self._send(200, "ok")
            if path == "/login" and query.get("login_challenge"):
                challenge = query["login_challenge"]
                request = self.app.admin(
                    "GET", "/admin/oauth2/auth/requests/login", {"login_challenge": challenge}
                )
                if request.get("skip"):  # Hydra remembers this browser's sign-in
                    return self._accept_login(challenge, request["subject"])
                client = request.get("client", {})
                name = client.get("client_name") or client.get("client_id", "")
                return self._login_form(challenge, name)
            if path == "/consent" and query.get("consent_challenge"):
                return self._consent(query["consent_challenge"])
            if path == "/logout" and query.get("logout_challenge"):
                done = self.app.admin(
                    "PUT",
                    "/admin/oauth2/auth/requests/logout/accept",
                    {"logout_challenge": query["logout_challenge"]},
                )
                return self._redirect(done["redirect_to"])
        except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
            return self._page("Error", f'<p class="error">{html.escape(str(error))}</p>', 502)
        self._page("Not found", "<p>Nothing here.</p>", 404)

    def do_POST(self) -> None:  # noqa: N802
        if urllib.parse.urlsplit(self.path).path != "/login":
            return self._page("Not found", "<p>Nothing here.</p>", 404)
        form = self._form()
        challenge = form.get("challenge", "")
        try:
            if form.get("action") == "deny":
                done = self.app.admin(
                    "PUT",
                    "/admin/oauth2/auth/requests/login/reject",
                    {"login_challenge": challenge},
                    {
                        "error": "access_denied",
                        "error_description": "The user cancelled the sign-in.",
                    },
                )
                return self._redirect(done["redirect_to"])
            username = form.get("username", "").strip()
            user = self.app.user(username)
            if user is None or not password_ok(
                user.get("password_sha256", ""), form.get("password", "")
            ):
                return self._login_form(
                    challenge, "the portal", "Wrong username or password.", username
                )
            if user.get("disabled"):
                done = self.app.admin(
                    "PUT",
                    "/admin/oauth2/auth/requests/login/reject",
                    {"login_challenge": challenge},
                    {
                        "error": "access_denied",
                        "error_description": f"The account {username} is disabled.",
                    },
                )
                return self._redirect(done["redirect_to"])
            return self._accept_login(challenge, username)
        except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
            return self._page("Error", f'<p class="error">{html.escape(str(error))}</p>', 502)

    def _accept_login(self, challenge: str, subject: str) -> None:
        done = self.app.admin(
            "PUT",
            "/admin/oauth2/auth/requests/login/accept",
            {"login_challenge": challenge},
            # No "remember": every portal sign-in shows this page, so a test (or a
            # person) can sign in as someone else right after logging out.
            {"subject": subject, "remember": False},
        )
        self._redirect(done["redirect_to"])

    def _consent(self, challenge: str) -> None:
        request = self.app.admin(
            "GET", "/admin/oauth2/auth/requests/consent", {"consent_challenge": challenge}
        )
        claims = self.app.claims(request["subject"])
        done = self.app.admin(
            "PUT",
            "/admin/oauth2/auth/requests/consent/accept",
            {"consent_challenge": challenge},
            {
                "grant_scope": request.get("requested_scope", []),
                "grant_access_token_audience": request.get("requested_access_token_audience", []),
                "remember": False,
                "session": {"id_token": claims, "access_token": {"groups": claims["groups"]}},
            },
        )
        self._redirect(done["redirect_to"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:14446")
    parser.add_argument("--admin-url", required=True, help="Hydra's admin API")
    parser.add_argument("--users", required=True, type=Path)
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    Handler.app = App(args.admin_url, args.users)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    print(f"listening on http://{args.listen}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
