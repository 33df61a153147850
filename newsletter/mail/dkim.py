"""DKIM signing (dkimpy), optional: set NEWSLETTER_DKIM_KEY_FILE and NEWSLETTER_DKIM_SELECTOR.

The signature covers the headers receivers judge, List-Unsubscribe and
List-Unsubscribe-Post included: Gmail and Yahoo only honour one-click unsubscribe when a
valid DKIM signature covers both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import dkim
import dkim.crypto

from newsletter.config import get_settings
from newsletter.mail.mime import DotSafe

SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version",
                  b"content-type", b"list-id", b"list-unsubscribe", b"list-unsubscribe-post"]


class SigningError(RuntimeError):
    """DKIM is configured but cannot sign (missing or unreadable key)."""


@lru_cache(maxsize=4)
def _key(path: str) -> bytes:
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read DKIM key {path}: {exc.strerror}") from None
    if b"PRIVATE KEY" not in key:
        raise SigningError(f"{path} is not a PEM private key")
    return key


def enabled() -> bool:
    settings = get_settings()
    return bool(settings.dkim_key_file and settings.dkim_selector)


def sign(message: bytes) -> bytes:
    """``message`` with a DKIM-Signature header prepended (unchanged when DKIM is off)."""
    settings = get_settings()
    if not enabled():
        return message
    domain = settings.dkim_domain or settings.mail_domain
    header = dkim.sign(message, settings.dkim_selector.encode(), domain.encode(),
                       _key(settings.dkim_key_file), include_headers=SIGNED_HEADERS,
                       canonicalize=(b"relaxed", b"relaxed"))
    signed = header + message
    # The signature's folded lines start with a space: a message that needed no
    # dot-stuffing still needs none.
    return DotSafe(signed) if type(message) is DotSafe and b"\n." not in header else signed


@dataclass(frozen=True)
class Status:
    """What the console shows of DKIM: never the key, only whether it can sign and with what."""

    configured: bool
    selector: str = ""
    domain: str = ""
    key_bits: int | None = None  # RSA modulus length; None for another kind of key
    problem: str = ""  # why a configured key cannot sign


def status() -> Status:
    settings = get_settings()
    if not enabled():
        return Status(False)
    selector, domain = settings.dkim_selector, settings.dkim_domain or settings.mail_domain
    try:
        key = dkim.crypto.parse_pem_private_key(_key(settings.dkim_key_file))
    except SigningError as exc:
        return Status(True, selector, domain, problem=str(exc))
    except Exception:  # dkimpy reads RSA keys; an Ed25519 key signs through another path
        return Status(True, selector, domain, problem="the key is not an RSA private key")
    return Status(True, selector, domain, key_bits=key["modulus"].bit_length())
