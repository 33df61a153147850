"""Signed, purpose-scoped tokens for the links in emails.

A token names a reader by id and by a short hash of their address, so a link keeps working
only for the reader it was made for (ids can be reused after erasure on SQLite). The
purpose is the signing salt: an unsubscribe token cannot confirm, a confirm token cannot
open preferences.

Keys rotate (``SECRET_KEYS``, newest first): new tokens are signed with the newest key and
a token verifies with any listed key, newest first, so a rotation never breaks a link
already in an inbox; a key taken off the list stops verifying its links.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, Signer, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.serializer import Serializer

from newsletter.config import get_settings
from newsletter.errors import ExpiredToken, InvalidToken  # noqa: F401 - re-exported

# "data": the short-lived link emailed on request to download or erase a reader's data or
# subscribe again (max age: settings.data_link_max_age_minutes); the long-lived links in
# every email (unsubscribe, preferences) never can.
PURPOSES = ("confirm", "unsubscribe", "preferences", "csrf", "view", "data")


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return _serializer_for(get_settings().signing_keys, purpose)


@lru_cache(maxsize=32)
def _serializer_for(keys: tuple[str, ...], purpose: str) -> URLSafeTimedSerializer:
    # Made once per key list and purpose: every email carries two tokens, and building the
    # serializer (key derivation included) cost a third of making one. itsdangerous wants
    # the keys oldest first; it signs with the last and verifies from the last backwards.
    return LinkSerializer(list(reversed(keys)), salt=f"newsletter.{purpose}")


class _Lean:
    """What itsdangerous' URL-safe serializers do per token, without two costs that buy
    nothing for our links. Tokens come out byte for byte as before, and old links still
    verify (``loads`` takes a payload compressed or not).

    - No zlib attempt. The URL-safe serializers compress every payload and keep the result if
      it is shorter; ours are under ~60 bytes of JSON that zlib cannot shorten, and each
      attempt set up and cleared a fresh deflate state: two per email, 4 % of the sending
      process's instructions per email (bench/RESULTS.md, "#17 before and after").
    - One signer per salt for the serializer's life (a signer holds only keys and names),
      not a new one per token.
    """

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))  # type: ignore[arg-type]

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        signers = self.__dict__.setdefault("_signers", {})
        signer = signers.get(salt)
        if signer is None:
            signer = signers[salt] = super().make_signer(salt)  # type: ignore[misc]
        return signer


class LinkSerializer(_Lean, URLSafeTimedSerializer):
    """Timed tokens: the links in emails and pages."""


class UntimedLinkSerializer(_Lean, URLSafeSerializer):
    """Tokens that never expire: the story links of click counting (click_links.py)."""


def email_tag(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:10]


def make(purpose: str, reader_id: int, email: str, **extra: Any) -> str:
    """A token for ``purpose`` naming ``reader_id``; ``extra`` rides along (e.g. edition id)."""
    return _serializer(purpose).dumps({"r": reader_id, "h": email_tag(email), **extra})


def make_form_token() -> str:
    """A time-stamped, single-use token for the public form: bots that post without loading
    it fail, and one served form cannot be posted twice (the nonce is spent on use)."""
    return _serializer_for(get_settings().signing_keys, "form").dumps(secrets.token_urlsafe(12))


def read_form_token(token: str, max_age_s: float) -> tuple[str, float]:
    """The form's nonce and the seconds since it was served; raises InvalidToken/ExpiredToken."""
    serializer = _serializer_for(get_settings().signing_keys, "form")  # every subscribe checks one
    try:
        nonce, signed_at = serializer.loads(token or "", max_age=max_age_s,
                                            return_timestamp=True)
    except SignatureExpired as exc:
        raise ExpiredToken("this form has expired") from exc
    except BadSignature as exc:
        raise InvalidToken("this form is not valid") from exc
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 64:
        raise InvalidToken("this form is not valid")  # one made before forms had a nonce
    return nonce, (datetime.now(UTC) - signed_at.astimezone(UTC)).total_seconds()


def read(purpose: str, token: str, max_age_s: float | None = None) -> tuple[dict[str, Any], datetime]:
    """The payload and signing time of a token; raises InvalidToken or ExpiredToken."""
    try:
        data, signed_at = _serializer(purpose).loads(
            token, max_age=max_age_s, return_timestamp=True
        )
    except SignatureExpired as exc:
        raise ExpiredToken("this link has expired") from exc
    except BadSignature as exc:
        raise InvalidToken("this link is not valid") from exc
    if not isinstance(data, dict) or not isinstance(data.get("r"), int) or "h" not in data:
        raise InvalidToken("this link is not valid")
    return data, signed_at.astimezone(UTC)
