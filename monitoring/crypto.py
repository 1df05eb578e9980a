"""Encryption of webhook signing secrets at rest.

The key is derived from ``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS`` for reading, so a
key rotation that keeps the old key as a fallback keeps existing webhooks working).
A secret encrypted under a key that is gone cannot be read: deliveries of that webhook
fail with a clear error and an admin re-creates it.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

_CONTEXT = b"isotope.monitoring.webhook-secret:"


class SecretUnreadable(Exception):
    """The stored secret was encrypted under a key that is no longer configured."""


def _fernet(key: str) -> Fernet:
    digest = hashlib.sha256(_CONTEXT + key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _keys() -> MultiFernet:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet(key) for key in keys])


def encrypt(secret: str) -> str:
    """Encrypt ``secret`` under the current ``SECRET_KEY``."""
    return _keys().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    """The plain secret, or ``SecretUnreadable``."""
    try:
        return _keys().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("webhook secret cannot be decrypted with SECRET_KEY") from None
