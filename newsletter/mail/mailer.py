"""The SMTP transport: the only module that talks to the mail relay.

Messages themselves are built in :mod:`newsletter.mail.mime` (re-exported here).

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
import os
import smtplib
import ssl
import threading
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from newsletter.config import get_settings
from newsletter.mail import throttle
from newsletter.mail.mime import (  # noqa: F401 - re-exported: callers build and send through here
    DotSafe,
    ascii_addr_spec,
    build_message,
    make_message_id,
    no_newlines,
)


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
    # Credentials over a plain connection, allowed only when the URL says so.
    insecure: bool = False

    @classmethod
    def from_url(cls, url: str) -> SmtpConfig:
        """Parse ``smtp://user:pass@host:port``, ``smtps://…`` or ``smtp://host?starttls=true``
        (``?insecure=true`` lets credentials travel without TLS)."""
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
        insecure = _BOOL.get(options.pop("insecure", "false").lower())
        if insecure is None:
            raise ValueError("SMTP URL option insecure must be true or false")
        timeout = float(options.pop("timeout", 30.0))
        if options:
            raise ValueError(f"unknown SMTP URL option(s): {', '.join(sorted(options))}")
        if scheme == "smtps" and starttls:
            raise ValueError(
                "smtps:// is TLS from the start; starttls=true applies to smtp:// only"
            )
        config = cls(
            host=parts.hostname,
            port=port or (465 if scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            ssl=scheme == "smtps",
            starttls=starttls,
            timeout=timeout,
            insecure=insecure,
        )
        if config.sends_password_in_clear:
            raise ValueError(PLAIN_AUTH)
        return config

    @property
    def sends_password_in_clear(self) -> bool:
        return bool(self.username) and not (self.ssl or self.starttls or self.insecure)


# Anyone on the path (a shared network, a compromised hop) reads an AUTH PLAIN/LOGIN
# exchange on a plain connection: the relay's password, good for sending as us.
PLAIN_AUTH = ("SMTP URL has a username and password on plain smtp:// without TLS: use "
              "smtps://host:465, add ?starttls=true, or add ?insecure=true for a relay you "
              "reach over a network you trust")


# --- transport ---------------------------------------------------------------------------


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _classify(code: int, reply: bytes | str, stage: str) -> MailerError:
    kind = PermanentFailure if 500 <= code <= 599 else TemporaryFailure
    return kind(_text(reply), code, stage)


def _envelope(addr: str) -> str:
    no_newlines(addr, "envelope address")
    if "<" in addr:
        addr = parseaddr(addr)[1]
    return ascii_addr_spec(addr.strip(), "envelope address")


class _Retryable(Exception):
    """The session died before the message was handed over: safe to resend at once."""

    def __init__(self, failure: MailerError) -> None:
        super().__init__(failure.reason)
        self.failure = failure


# What push and flush return: each message's tag with None once the relay took it, else
# the MailerError saying why not.
Outcome = tuple[Any, MailerError | None]


class SmtpTransport:
    """One reusable SMTP session, pipelined: ``push`` a message, ``flush``, ``close``.

    Sent one by one, a message costs two round trips: the envelope (MAIL, RCPT and DATA,
    pipelined) and then its data. RFC 2920 lets the data of one message and the envelope of
    the next go in one write, so ``push`` hands over the *previous* message's data together
    with this message's envelope, and returns the outcomes that became known: the previous
    message's, and this one's if its envelope was refused. ``flush`` hands over the last
    one. Against a distant relay, where the round trips are most of a message's time, that
    is up to twice the messages per connection; to smtp-sink on loopback here, a quarter
    more (bench/RESULTS.md). A relay without PIPELINING gets each message whole within
    ``push``. One message alone is :func:`send_one`: push, then flush.

    The session connects lazily and reconnects once if it dropped. While a message is open
    (its envelope accepted, its data not sent) the session belongs to the thread that pushed
    it, until its flush or ``close``; ``close`` with a message open drops the session, which
    discards that message at the relay: it was not sent.
    """

    def __init__(self, config: SmtpConfig, limiter: throttle.Limiter | None = None) -> None:
        self.config = config
        # The global send rate (SMTP_RATE), waited out before each message.
        self.limiter = limiter
        self._conn: smtplib.SMTP | None = None
        self._open: tuple[Any, bytes] | None = None  # envelope accepted (354), data not sent
        # Cheap when uncontended, and makes a thread-pool worker safe: held from a push until
        # nothing is open, so no other thread's message can take this one's data turn.
        self._lock = threading.Lock()
        self._owner: int | None = None

    def _connect(self) -> smtplib.SMTP:
        cfg, stage = self.config, "connect"
        if cfg.sends_password_in_clear:  # a config built by hand, not by from_url
            raise AuthenticationFailure(PLAIN_AUTH, stage="auth")
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

    # --- the interface ---

    def push(self, from_addr: str, to_addr: str, message: bytes, tag: Any) -> list[Outcome]:
        """Hand over ``message`` (its data goes with the next push or the flush); returns the
        outcomes now known. Raises ValueError for an address no envelope can carry."""
        sender, recipient = _envelope(from_addr), _envelope(to_addr)
        if self.limiter is not None:
            self.limiter.acquire()
        self._hold()
        try:
            return self._push(sender, recipient, message, tag)
        except BaseException:
            # Interrupted mid-exchange (a task's time limit): the session's state is unknown,
            # and a message left open must not go with someone else's turn. Start afresh.
            self._open = None
            self._drop()
            raise
        finally:
            self._let_go()

    def flush(self) -> list[Outcome]:
        """Hand over the message still open; returns its outcome (nothing if none is)."""
        if self._open is None or self._owner != threading.get_ident():
            return []
        try:
            (tag, data), self._open = self._open, None
            return self._flush_one(tag, data)
        finally:
            self._let_go()

    def close(self) -> None:
        """QUIT politely and close the connection (a later ``push`` reconnects); a message
        still open is dropped with the session, unsent."""
        self._hold()
        try:
            if self._open is not None:
                self._discard()
                return
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()
        finally:
            self._let_go()

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one message's turn ---

    def _hold(self) -> None:
        if self._owner != threading.get_ident():  # this thread's open message: held already
            self._lock.acquire()
            self._owner = threading.get_ident()

    def _let_go(self) -> None:
        if self._open is None and self._owner == threading.get_ident():
            self._owner = None
            self._lock.release()

    def _discard(self) -> None:
        if self._open is not None:
            self._open = None
            self._drop()

    def _push(self, sender: str, recipient: str, message: bytes, tag: Any) -> list[Outcome]:
        done: list[Outcome] = []
        if self._open is not None:
            (previous, data), self._open = self._open, None
            conn = self._conn
            if conn is not None and conn.has_extn("pipelining"):
                outcome, replies = self._data_then_envelope(conn, data, sender, recipient)
                done.append((previous, outcome))
                if replies is not None:
                    try:
                        self._check_envelope(conn, replies)
                    except _Retryable:
                        self._drop()  # the relay is closing: this one starts again below
                    except MailerError as exc:
                        done.append((tag, exc))
                        return done
                    else:
                        self._open = (tag, message)
                        return done
        try:
            conn = self._begin(sender, recipient)
        except MailerError as exc:
            done.append((tag, exc))
            return done
        if conn.has_extn("pipelining"):
            self._open = (tag, message)
        else:  # nothing can go with its data: hand it over now
            done += self._flush_one(tag, message)
        return done

    def _flush_one(self, tag: Any, data: bytes) -> list[Outcome]:
        conn = self._conn
        if conn is None:  # cannot happen while a message is open; never send it blind
            return [(tag, TemporaryFailure("session lost before DATA", None, "data"))]
        try:
            self._send_data(conn, data)
        except MailerError as exc:
            return [(tag, exc)]
        return [(tag, None)]

    def _data_then_envelope(self, conn: smtplib.SMTP, data: bytes, sender: str, recipient: str
                            ) -> tuple[MailerError | None, list[tuple[int, bytes]] | None]:
        """One write: the open message's data, then MAIL, RCPT and DATA for the next. Returns
        the open message's outcome and the next envelope's replies (None: start it afresh)."""
        commands = f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
        try:
            conn.send(_data(data) + commands.encode("ascii"))
            code, reply = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return _lost_during_data(exc), None
        # The end of data ends the transaction whatever the verdict (RFC 5321 4.1.1.4), so
        # the MAIL behind it starts the next one without an RSET.
        outcome = None if code == 250 else _classify(code, reply, "data")
        if code == 421:
            self._drop()
            return outcome, None
        try:
            return outcome, [conn.getreply() for _ in range(3)]
        except (smtplib.SMTPException, OSError):
            self._drop()  # the next message never had its data sent: it starts again
            return outcome, None

    def _begin(self, sender: str, recipient: str) -> smtplib.SMTP:
        """Connect if need be and open a transaction up to DATA's 354 (reconnecting once)."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._check_envelope(self._conn, self._envelope(self._conn, sender, recipient))
                return self._conn
            except _Retryable as exc:
                # Typically a relay that timed out our idle session: reconnect once.
                self._drop()
                if attempt == 2:
                    raise exc.failure from exc
        raise AssertionError("unreachable")

    def _send_data(self, conn: smtplib.SMTP, message: bytes) -> None:
        """The message after DATA's 354, and the relay's verdict on it."""
        try:
            conn.send(_data(message))
            code, reply = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise _lost_during_data(exc) from exc
        if code != 250:
            self._after_refusal(code)
            raise _classify(code, reply, "data")

    @staticmethod
    def _envelope(conn: smtplib.SMTP, sender: str,
                  recipient: str) -> list[tuple[int, bytes]]:
        """MAIL, RCPT and DATA: the replies up to the first refusal (all three pipelined)."""
        commands = (("mail", f"MAIL FROM:<{sender}>"), ("rcpt", f"RCPT TO:<{recipient}>"),
                    ("data", "DATA"))
        stage = "mail"
        try:
            if conn.has_extn("pipelining"):
                # RFC 2920: one write and one round trip instead of three. A relay that
                # refuses MAIL or RCPT must refuse the DATA too.
                conn.send("".join(f"{c}\r\n" for _, c in commands).encode("ascii"))
                replies = []
                for name, _ in commands:
                    stage = name  # for the error: which reply never came
                    replies.append(conn.getreply())
                return replies
            replies = []
            for (name, command), ok in zip(commands, ((250,), (250, 251), (354,)),
                                           strict=True):
                stage = name
                conn.putcmd(command)
                replies.append(conn.getreply())
                if replies[-1][0] not in ok:
                    break
            return replies
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Retryable(TemporaryFailure(f"connection lost: {exc}", None, stage)) from exc

    def _check_envelope(self, conn: smtplib.SMTP, replies: list[tuple[int, bytes]]) -> None:
        """Raise for a refused envelope (after clearing the half-done transaction)."""
        for stage, (code, reply), ok in zip(("mail", "rcpt", "data"), replies,
                                            ((250,), (250, 251), (354,)), strict=False):
            if code in ok:
                continue
            if code == 421:  # the relay is closing this session (idle timeout, shutdown)
                raise _Retryable(_classify(code, reply, stage))
            if replies[-1][0] == 354:
                # Pipelined: the relay took DATA although it refused the envelope. An empty
                # message ends it, and the RSET below discards it.
                self._end_empty_data(conn)
            self._after_refusal(code)
            raise _classify(code, reply, stage)

    def _end_empty_data(self, conn: smtplib.SMTP) -> None:
        try:
            conn.send(b".\r\n")
            conn.getreply()
        except (smtplib.SMTPException, OSError):
            self._drop()

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


def _data(message: bytes) -> bytes:
    """The message as sent after DATA: dot-stuffed (in C, not smtplib's regex) and ended."""
    if type(message) is not DotSafe:  # ours are built without a line starting with "."
        if message.startswith(b"."):
            message = b"." + message
        if b"\n." in message:
            message = message.replace(b"\r\n.", b"\r\n..")
    return message + (b".\r\n" if message.endswith(b"\r\n") else b"\r\n.\r\n")


def _lost_during_data(exc: Exception) -> TemporaryFailure:
    # The relay may or may not have taken the message, so no immediate resend; the caller's
    # later retry reuses the Message-ID, which lets duplicates be spotted.
    return TemporaryFailure(f"connection lost during DATA: {exc}", None, "data")


def send_one(transport: SmtpTransport, from_addr: str, to_addr: str, message: bytes) -> None:
    """Hand one message to the relay: push, then flush. Raises its TemporaryFailure or
    PermanentFailure (ValueError for an address no envelope can carry)."""
    for _tag, failure in transport.push(from_addr, to_addr, message, None) + transport.flush():
        if failure is not None:
            raise failure


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
                settings = get_settings()
                limiter = throttle.limiter_for(settings.smtp_rate, settings.broker)
                transport = _transports[key] = SmtpTransport(SmtpConfig.from_url(url), limiter)
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
