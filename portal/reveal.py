"""Show a newly created secret (an API token, a webhook signing secret) once, on the page
a form's POST redirects to, without keeping it readable anywhere on the server.

The secret is encrypted under a fresh random key; the ciphertext goes into the session
and the key into a short-lived, HttpOnly, same-site cookie of that browser. Neither
alone reveals anything: a dump of the session store (or of ``SECRET_KEY``) cannot read
it, and the page that shows it removes both. Either expires after :data:`TTL_SECONDS`.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

TTL_SECONDS = 120


def _key(name: str) -> str:
    """The session key and the cookie name (the same string)."""
    return f"isotope_reveal_{name}"


def reveal_stash(request, response, *, name: str, secret: str) -> None:
    """Keep ``secret`` for the next page of this browser (see the module docstring)."""
    key = Fernet.generate_key()
    request.session[_key(name)] = Fernet(key).encrypt(secret.encode()).decode()
    response.set_cookie(
        _key(name),
        key.decode(),
        max_age=TTL_SECONDS,
        httponly=True,
        secure=settings.SESSION_COOKIE_SECURE,
        samesite="Strict",
    )


def reveal_take(request, *, name: str) -> str | None:
    """The secret kept by :func:`reveal_stash`, once: the session's half is removed now
    (call :func:`reveal_done` on the response for the cookie's). None when there is
    none, it expired, or it was kept for another browser."""
    token = request.session.pop(_key(name), None)
    key = request.COOKIES.get(_key(name))
    if not token or not key:
        return None
    try:
        return Fernet(key.encode()).decrypt(token.encode(), ttl=TTL_SECONDS).decode()
    except (InvalidToken, ValueError):
        return None


def reveal_done(request, response, *, name: str) -> None:
    """Remove the browser's half (the key cookie), if it sent one."""
    if _key(name) in request.COOKIES:
        response.delete_cookie(_key(name), samesite="Strict")
