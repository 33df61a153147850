"""VERP: every email's envelope sender names the message it belongs to.

A bounce goes back to a message's envelope sender (SMTP ``MAIL FROM``, which the receiving
side records as ``Return-Path``). Sending each message from an address of its own,
``bounces+TOKEN@domain``, ties a report to exactly one message we sent, as Mailman does:
anyone can write a report that names a reader's address, but nobody without our key can
name one of our deliveries.

TOKEN is a kind letter (``d`` a delivery of an edition, ``c`` a confirmation, ``w`` a
welcome, ``a`` the link to a reader's own data), the delivery's or reader's id, a hyphen
and 16 base-32 characters (80 bits) of an HMAC over kind, id and the address the message
went to: an id reused after an erasure never matches an old bounce. All lower case, since
some relays fold a local part's case.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache

from newsletter.config import get_settings

KINDS = {"d": "delivery", "c": "confirm", "w": "welcome", "a": "data_access"}
NOTICE_KINDS = {"confirm": "c", "welcome": "w", "data_access": "a"}
SIGNATURE_CHARS = 16
_TOKEN = re.compile(r"([dcwa])([0-9]{1,12})-([a-z2-7]{16})")


@dataclass(frozen=True)
class Envelope:
    """What a bounce address says: the kind of message, its id, and the signature."""

    kind: str
    ident: int
    signature: str


def envelope_sender(kind: str, ident: int, email: str) -> str:
    """The signed bounce address for one message (its ``MAIL FROM``)."""
    local, domain = get_settings().bounce_mailbox
    return f"{local}+{token(kind, ident, email)}@{domain}"


def token(kind: str, ident: int, email: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown VERP kind {kind!r}")
    return f"{kind}{ident}-{_signature(get_settings().signing_keys[0], kind, ident, email)}"


def read(address: str) -> Envelope | None:
    """The token in one of our bounce addresses; None for any other address."""
    local, domain = get_settings().bounce_mailbox
    name, at, host = address.strip().strip("<>").lower().rpartition("@")
    if not at or host != domain or not name.startswith(local + "+"):
        return None
    match = _TOKEN.fullmatch(name[len(local) + 1:])
    if match is None:
        return None
    return Envelope(match.group(1), int(match.group(2)), match.group(3))


def verify(envelope: Envelope, email: str) -> bool:
    """Whether ``envelope`` is ours for a message sent to ``email``."""
    # Every key still listed (SECRET_KEYS, newest first): a bounce of mail sent before a
    # rotation arrives days later and must still match.
    return any(hmac.compare_digest(_signature(key, envelope.kind, envelope.ident, email),
                                   envelope.signature)
               for key in get_settings().signing_keys)


def _signature(secret: str, kind: str, ident: int, email: str) -> str:
    mac = hmac.digest(_key(secret), f"{kind}{ident}|{email.lower()}".encode(), "sha256")
    return base64.b32encode(mac).decode("ascii")[:SIGNATURE_CHARS].lower()


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    # A key of its own, so a bounce address can never serve as any other signed token.
    return hmac.new(secret.encode(), b"newsletter.verp", hashlib.sha256).digest()
