"""Building messages: hand-assembled MIME bytes with the headers receivers judge.

``email.message.EmailMessage`` is ~10x slower and we send thousands a second, so messages
are assembled as bytes: CRLF line ends, RFC 2047 for non-ASCII header text, both bodies
quoted-printable so no line exceeds 76 octets. No CR or LF reaches a header.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

_MAX_LINE = 78  # RFC 5322's "SHOULD"; 998 is the hard limit
# Printable ASCII that a parser will not mistake for an encoded word.
_PLAIN = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
# Headers build_message sets itself; extra_headers may not repeat them.
_MANAGED = {"from", "to", "subject", "date", "message-id", "mime-version", "list-id"}
_MANAGED |= {"list-unsubscribe", "list-unsubscribe-post", "content-type"}
_MANAGED |= {"content-transfer-encoding"}


_PART_HEAD = (
    "--{}\r\nContent-Type: text/{}; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)


def no_newlines(value: str, what: str) -> str:
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"{what} contains a line break or NUL (header injection?)")
    return value


def _encoded_words(text: str, used: int) -> str:
    """``text`` as RFC 2047 base64 words folded within 78 columns; ``used`` columns are taken."""
    data = text.encode("utf-8")
    words: list[str] = []
    room = _MAX_LINE - used
    i, n = 0, len(data)
    while i < n:
        # A word is "=?utf-8?b?" + base64 + "?=": 12 columns plus 4 per 3 bytes.
        take = max((room - 12) // 4 * 3, 6)
        j = min(i + take, n)
        while j < n and (data[j] & 0xC0) == 0x80:  # never split a UTF-8 sequence
            j -= 1
        words.append("=?utf-8?b?" + binascii.b2a_base64(data[i:j], newline=False).decode() + "?=")
        i = j
        room = _MAX_LINE - 1  # continuation lines start with one space
    return "\r\n ".join(words)


def _fold_plain(value: str, used: int) -> str | None:
    """Fold printable ASCII at spaces; None when it cannot be folded cleanly."""
    if used + len(value) <= _MAX_LINE:
        return value
    if "  " in value:
        return None  # a fold there could leave a whitespace-only line
    lines: list[str] = []
    current, width = "", used
    for k, word in enumerate(value.split(" ")):
        piece = word if k == 0 else " " + word
        if current and width + len(piece) > _MAX_LINE:
            lines.append(current)
            current, width = piece, len(piece)
        else:
            current += piece
            width += len(piece)
    lines.append(current)
    if any(len(line) > 998 for line in lines):
        return None
    return "\r\n".join(lines)


def _unstructured(name: str, value: str) -> str:
    no_newlines(value, name)
    used = len(name) + 2
    if _PLAIN.fullmatch(value) and "=?" not in value:
        folded = _fold_plain(value, used)
        if folded is not None:
            return folded
    return _encoded_words(value, used) if value else ""


def ascii_addr_spec(addr: str, what: str) -> str:
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or " " in addr or "<" in addr or ">" in addr:
        raise ValueError(f"{what}: {addr!r} is not an email address")
    if not local.isascii():
        raise ValueError(f"{what}: non-ASCII local part {local!r} needs SMTPUTF8 (unsupported)")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


@lru_cache(maxsize=1024)
def _mailbox(name: str, value: str) -> str:
    # Cached: From is the same on every message of a process.
    display, addr = parseaddr(value)
    if not addr:
        raise ValueError(f"{name}: cannot parse address {value!r}")
    addr = ascii_addr_spec(addr, name)
    if not display:
        return addr
    if display.isascii() and "=?" not in display:
        return formataddr((display, addr))
    words = _encoded_words(display, len(name) + 2)
    last = len(words.rsplit("\n", 1)[-1])
    return words + ("\r\n <" if last + len(addr) + 3 > _MAX_LINE else " <") + addr + ">"


def _address(name: str, value: str) -> str:
    no_newlines(value, name)
    # A bare ASCII address (every reader's To:) skips parsing.
    if value.isascii() and "<" not in value and '"' not in value and "," not in value:
        return ascii_addr_spec(value.strip(), name)
    return _mailbox(name, value)


def _list_id(value: str) -> str:
    # Accepts "<list.example.com>", "Name <list.example.com>" or a bare "list.example.com".
    phrase, _, ident = no_newlines(value, "List-Id").strip().rpartition("<")
    ident = "<" + ident if phrase or value.strip().startswith("<") else f"<{ident}>"
    if not ident.isascii() or not ident.endswith(">") or " " in ident or ident.count("<") > 1:
        raise ValueError(f"List-Id must be 'phrase <list.id.domain>', got {value!r}")
    phrase = phrase.strip()
    return (_unstructured("List-Id", phrase) + " " + ident) if phrase else ident


def _list_unsubscribe(url: str, mailto: str | None) -> str:
    no_newlines(url, "unsubscribe_url")
    if not url.lower().startswith(("https://", "http://")) or not url.isascii() or " " in url:
        raise ValueError(f"unsubscribe_url must be an absolute ASCII http(s) URL, got {url!r}")
    if not mailto:
        return f"<{url}>"
    if not no_newlines(mailto, "unsubscribe_mailto").lower().startswith("mailto:"):
        mailto = "mailto:" + mailto
    if not mailto.isascii() or " " in mailto:
        raise ValueError(f"unsubscribe_mailto must be ASCII without spaces, got {mailto!r}")
    return f"<{url}>,\r\n <{mailto}>"


def _qp(body: str) -> bytes:
    if "\r" in body:
        body = body.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    # b2a_qp writes CRLF (hard and soft breaks) when the input's first line ends in CRLF.
    return binascii.b2a_qp(body.replace("\n", "\r\n").encode("utf-8"), istext=True)


def make_message_id(domain: str) -> str:
    """A new globally unique Message-ID, angle brackets included."""
    if not domain or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", domain):
        raise ValueError(f"bad Message-ID domain {domain!r}")
    return f"<{secrets.token_hex(16)}@{domain}>"


def build_message(
    *,
    from_addr: str,
    to_addr: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    list_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str | None = None,
    date: datetime | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> bytes:
    """The complete RFC 5322 message (multipart/alternative: text, then HTML) as CRLF bytes.

    Raises ValueError for a line break in any header value or an unusable address.
    """
    no_newlines(message_id, "Message-ID")
    if not (
        message_id.startswith("<")
        and message_id.endswith(">")
        and "@" in message_id
        and message_id.isascii()
        and " " not in message_id
    ):
        raise ValueError(f"Message-ID must look like <id@domain>, got {message_id!r}")
    when = date or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # naive datetimes in this project are UTC
    headers = [
        "From: " + _address("From", from_addr),
        "To: " + _address("To", to_addr),
        "Subject: " + _unstructured("Subject", subject),
        "Date: " + format_datetime(when.astimezone(UTC), usegmt=True),
        "Message-ID: " + message_id,
        "MIME-Version: 1.0",
        "List-Id: " + _list_id(list_id),
        "List-Unsubscribe: " + _list_unsubscribe(unsubscribe_url, unsubscribe_mailto),
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    ]
    for name, value in (extra_headers or {}).items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _MANAGED:
            raise ValueError(f"extra header name {name!r} is invalid or set by build_message")
        headers.append(f"{name}: " + _unstructured(name, value))
    # "=_" cannot occur in quoted-printable output, so the boundary can never collide.
    boundary = "=_nl_" + secrets.token_hex(12)
    headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    out = bytearray(("\r\n".join(headers) + "\r\n\r\n").encode("ascii"))
    for subtype, body in (("plain", text), ("html", html)):
        out += _PART_HEAD.format(boundary, subtype).encode("ascii") + _qp(body) + b"\r\n"
    out += f"--{boundary}--\r\n".encode("ascii")
    return bytes(out)
