"""MIME building and the SMTP transport: the only module that talks to the mail relay.

Messages are assembled by hand as bytes (``email.message.EmailMessage`` is ~10x slower and
we send thousands a second): CRLF line ends, RFC 2047 for non-ASCII header text, both
bodies quoted-printable so no line exceeds 76 octets.

Errors raised by :class:`SmtpTransport`::

    MailerError                  base class; .code (SMTP reply code or None), .reason, .stage
    ├── TemporaryFailure         4xx, timeouts, refused/dropped connections: retry later
    └── PermanentFailure         5xx: retrying the same message will not help
        └── AuthenticationFailure   the relay rejected our credentials (a config problem)

``.stage`` says where it happened ("connect", "auth", "mail", "rcpt", "data"): a 5xx at
"rcpt" condemns one address, a 5xx at "mail" or "data" may condemn the whole send.
"""

from __future__ import annotations

import atexit
import binascii
import os
import re
import secrets
import smtplib
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from urllib.parse import parse_qsl, unquote, urlsplit


class MailerError(Exception):
    """A message could not be handed to the relay."""

    def __init__(self, reason: str, code: int | None = None, stage: str = "") -> None:
        super().__init__(f"{code} {reason}" if code is not None else reason)
        self.code = code
        self.reason = reason
        self.stage = stage


class TemporaryFailure(MailerError):
    """Try again later: 4xx reply, timeout, or lost connection."""


class PermanentFailure(MailerError):
    """Do not retry: 5xx reply."""


class AuthenticationFailure(PermanentFailure):
    """The relay refused our username/password."""


# --- configuration -----------------------------------------------------------------------

_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    starttls: bool = False
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """Parse ``smtp://user:pass@host:port``, ``smtps://…`` or ``smtp://host?starttls=true``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):  # (never echo the URL: it may hold a password)
            got = f"{scheme}://" if scheme else "no scheme"
            raise ValueError(f"SMTP URL must start with smtp:// or smtps://, got {got}")
        if not parts.hostname:
            raise ValueError("SMTP URL has no host: expected smtp://[user:pass@]host[:port]")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("SMTP URL has an invalid port") from None
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        starttls = _BOOL.get(options.pop("starttls", "false").lower())
        if starttls is None:
            raise ValueError("SMTP URL option starttls must be true or false")
        timeout = float(options.pop("timeout", 30.0))
        if options:
            raise ValueError(f"unknown SMTP URL option(s): {', '.join(sorted(options))}")
        if scheme == "smtps" and starttls:
            raise ValueError(
                "smtps:// is TLS from the start; starttls=true applies to smtp:// only"
            )
        return cls(
            host=parts.hostname,
            port=port or (465 if scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            ssl=scheme == "smtps",
            starttls=starttls,
            timeout=timeout,
        )


# --- message building --------------------------------------------------------------------

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


def _no_newlines(value: str, what: str) -> str:
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
    _no_newlines(value, name)
    used = len(name) + 2
    if _PLAIN.fullmatch(value) and "=?" not in value:
        folded = _fold_plain(value, used)
        if folded is not None:
            return folded
    return _encoded_words(value, used) if value else ""


def _ascii_addr_spec(addr: str, what: str) -> str:
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
    addr = _ascii_addr_spec(addr, name)
    if not display:
        return addr
    if display.isascii() and "=?" not in display:
        return formataddr((display, addr))
    words = _encoded_words(display, len(name) + 2)
    last = len(words.rsplit("\n", 1)[-1])
    return words + ("\r\n <" if last + len(addr) + 3 > _MAX_LINE else " <") + addr + ">"


def _address(name: str, value: str) -> str:
    _no_newlines(value, name)
    # A bare ASCII address (every reader's To:) skips parsing.
    if value.isascii() and "<" not in value and '"' not in value and "," not in value:
        return _ascii_addr_spec(value.strip(), name)
    return _mailbox(name, value)


def _list_id(value: str) -> str:
    # Accepts "<list.example.com>", "Name <list.example.com>" or a bare "list.example.com".
    phrase, _, ident = _no_newlines(value, "List-Id").strip().rpartition("<")
    ident = "<" + ident if phrase or value.strip().startswith("<") else f"<{ident}>"
    if not ident.isascii() or not ident.endswith(">") or " " in ident or ident.count("<") > 1:
        raise ValueError(f"List-Id must be 'phrase <list.id.domain>', got {value!r}")
    phrase = phrase.strip()
    return (_unstructured("List-Id", phrase) + " " + ident) if phrase else ident


def _list_unsubscribe(url: str, mailto: str | None) -> str:
    _no_newlines(url, "unsubscribe_url")
    if not url.lower().startswith(("https://", "http://")) or not url.isascii() or " " in url:
        raise ValueError(f"unsubscribe_url must be an absolute ASCII http(s) URL, got {url!r}")
    if not mailto:
        return f"<{url}>"
    if not _no_newlines(mailto, "unsubscribe_mailto").lower().startswith("mailto:"):
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
    _no_newlines(message_id, "Message-ID")
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


# --- transport ---------------------------------------------------------------------------


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _classify(code: int, reply: bytes | str, stage: str) -> MailerError:
    kind = PermanentFailure if 500 <= code <= 599 else TemporaryFailure
    return kind(_text(reply), code, stage)


def _envelope(addr: str) -> str:
    _no_newlines(addr, "envelope address")
    if "<" in addr:
        addr = parseaddr(addr)[1]
    return _ascii_addr_spec(addr.strip(), "envelope address")


class _Retryable(Exception):
    """The session died before the message was handed over: safe to resend at once."""

    def __init__(self, failure: MailerError) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class SmtpTransport:
    """One reusable SMTP session; ``send`` connects lazily and reconnects once if it dropped."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._conn: smtplib.SMTP | None = None
        # Cheap when uncontended, and makes a thread-pool worker safe.
        self._lock = threading.Lock()

    def _connect(self) -> smtplib.SMTP:
        cfg, stage = self.config, "connect"
        conn: smtplib.SMTP | None = None
        try:
            if cfg.ssl:
                context = ssl.create_default_context()
                conn = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            conn.ehlo()
            if cfg.starttls:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if cfg.username:
                stage = "auth"
                conn.login(cfg.username, cfg.password or "")
            return conn
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, (smtplib.SMTPException, OSError)):
                raise _connect_error(exc, stage) from exc
            raise

    def send(self, from_addr: str, to_addr: str, message: bytes) -> None:
        """Hand one message to the relay; raises TemporaryFailure or PermanentFailure."""
        sender, recipient = _envelope(from_addr), _envelope(to_addr)
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = self._connect()
                try:
                    return self._transaction(self._conn, sender, recipient, message)
                except _Retryable as exc:
                    # Typically a relay that timed out our idle session: reconnect once.
                    self._drop()
                    if attempt == 2:
                        raise exc.failure from exc

    def _transaction(self, conn: smtplib.SMTP, sender: str, recipient: str, message: bytes) -> None:
        for stage, command, arg, ok in (
            ("mail", conn.mail, sender, (250,)),
            ("rcpt", conn.rcpt, recipient, (250, 251)),
        ):
            try:
                code, reply = command(arg)
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                raise _Retryable(TemporaryFailure(f"connection lost: {exc}", None, stage)) from exc
            if code == 421:  # the relay is closing this session (idle timeout, shutdown)
                raise _Retryable(_classify(code, reply, stage))
            if code not in ok:
                self._after_refusal(code)
                raise _classify(code, reply, stage)
        try:
            code, reply = conn.data(message)
        except smtplib.SMTPDataError as exc:
            self._after_refusal(exc.smtp_code)
            raise _classify(exc.smtp_code, exc.smtp_error, "data") from exc
        except (smtplib.SMTPException, OSError) as exc:
            # The relay may or may not have taken the message, so no immediate resend; the
            # caller's later retry reuses the Message-ID, which lets duplicates be spotted.
            self._drop()
            raise TemporaryFailure(f"connection lost during DATA: {exc}", None, "data") from exc
        if code != 250:
            self._after_refusal(code)
            raise _classify(code, reply, "data")

    def _after_refusal(self, code: int) -> None:
        # 421 means the relay is closing the session; otherwise RSET clears the half-done
        # transaction so the next message starts clean, and a failing RSET drops the session.
        if code == 421 or self._conn is None:
            self._drop()
            return
        try:
            self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """QUIT politely and close the connection (a later ``send`` reconnects)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect_error(exc: Exception, stage: str) -> MailerError:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return AuthenticationFailure(_text(exc.smtp_error), exc.smtp_code, "auth")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # No AUTH or STARTTLS offered: the config and the relay disagree; retrying won't fix it.
        return PermanentFailure(str(exc), None, stage)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _classify(exc.smtp_code, exc.smtp_error, stage)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentFailure(f"TLS certificate rejected: {exc}", None, stage)
    return TemporaryFailure(f"SMTP {stage} failed: {exc!r}", None, stage)


# --- one transport per process -----------------------------------------------------------

_transports: dict[tuple[str, int], SmtpTransport] = {}
_transports_lock = threading.Lock()


def get_transport(url: str) -> SmtpTransport:
    """This process's transport for ``url``; a forked child gets its own, never the parent's."""
    key = (url, os.getpid())
    transport = _transports.get(key)
    if transport is None:
        with _transports_lock:
            transport = _transports.get(key)
            if transport is None:
                transport = _transports[key] = SmtpTransport(SmtpConfig.from_url(url))
    return transport


@atexit.register
def _close_transports() -> None:
    pid = os.getpid()
    for (_, owner), transport in list(_transports.items()):
        # A child that inherited the parent's sockets must not QUIT the parent's sessions.
        if owner == pid:
            transport.close()


def _forget_parent_transports() -> None:
    # Runs in a freshly forked child: forget the parent's transports (and a lock that may
    # have been held at fork time). Their sockets are only closed here when garbage
    # collected, which releases the child's copy of the descriptor and sends nothing, so
    # the parent's sessions carry on.
    global _transports_lock
    _transports_lock = threading.Lock()
    _transports.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_transports)
