"""Signing secrets: made here, shown once, kept encrypted at rest.

We sign with the secret, so it must stay readable: it cannot be hashed as API tokens are.
It is sealed with Fernet (AES-CBC and HMAC-SHA256) under a key derived from SECRET_KEYS, so
a copy of the database alone cannot forge our webhooks. Sealed with the newest key, opened
with any listed one: rotating SECRET_KEYS keeps endpoints working while their old key stays
on the list; an endpoint registered under a key since dropped must be registered again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from newsletter.config import get_settings

PREFIX = "whsec_"
# 24 random bytes: the Standard Webhooks libraries accept 24 to 64.
SECRET_BYTES = 24


def new_secret() -> str:
    """A fresh secret in the Standard Webhooks form, ``whsec_<base64>``."""
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def key_of(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    return base64.b64decode(secret.removeprefix(PREFIX))


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    # A key of its own per purpose (HMAC as the KDF): the link-signing key never encrypts.
    return MultiFernet([Fernet(base64.urlsafe_b64encode(
        hmac.new(key.encode(), b"newsletter.webhook-secrets", hashlib.sha256).digest()))
        for key in keys])


def seal(secret: str) -> str:
    return _fernet(get_settings().signing_keys).encrypt(secret.encode()).decode()


def unseal(sealed: str) -> str:
    """The secret; ValueError when no listed key opens it (its key was dropped)."""
    try:
        return _fernet(get_settings().signing_keys).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise ValueError("no key in SECRET_KEYS opens this webhook secret") from None
