"""Encryption of secrets at rest (webhook signing secrets, cluster kubeconfigs).

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
# Other purposes derive their own key from the same SECRET_KEY (a key per purpose).
KUBECONFIG = b"isotope.compute.kubeconfig:"


class SecretUnreadable(Exception):
    """The stored secret was encrypted under a key that is no longer configured."""


def _fernet(key: str, context: bytes = _CONTEXT) -> Fernet:
    digest = hashlib.sha256(context + key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _keys(context: bytes = _CONTEXT) -> MultiFernet:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet(key, context) for key in keys])


def encrypt(secret: str, *, context: bytes = _CONTEXT) -> str:
    """Encrypt ``secret`` under the current ``SECRET_KEY`` (``context``: the purpose,
    e.g. :data:`KUBECONFIG`; the default is the webhook secrets')."""
    return _keys(context).encrypt(secret.encode()).decode()


def decrypt(token: str, *, context: bytes = _CONTEXT) -> str:
    """The plain secret, or ``SecretUnreadable``."""
    try:
        return _keys(context).decrypt(token.encode()).decode()
    except InvalidToken:
        what = "kubeconfig" if context == KUBECONFIG else "webhook secret"
        raise SecretUnreadable(f"{what} cannot be decrypted with SECRET_KEY") from None
