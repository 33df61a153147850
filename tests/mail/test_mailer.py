"""MIME building checked by Python's own parser, and the SMTP transport against a real
aiosmtpd server on loopback (plain, AUTH, TLS, dropped sessions, refusals)."""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from html import escape as html_escape
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.mail.mailer import (
    AuthenticationFailure,
    PermanentFailure,
    SmtpConfig,
    SmtpTransport,
    TemporaryFailure,
    build_message,
    get_transport,
    make_message_id,
    send_one,
)
from newsletter.mail.mime import DotSafe, MessageTemplate, Shared

ARABIC = "نشرة الأخبار: أهم القصص اليوم من سوريا وروسيا والاقتصاد"
ACCENTED = "Ṣaḥāfa — l’édition spéciale du jeudi, avec « guillemets »"
TEXT = "Good morning.\n\nCeasefire talks resume in Geneva\nhttps://news.example.com/a?x=1&y=2\n" + (
    "A long summary line with café, naïve and سوريا that needs soft breaks. " * 6
)
HTML = (
    '<!DOCTYPE html>\n<html lang="en"><body><p style="color:#333">Café &amp; سوريا</p>'
    + ('<a href="https://news.example.com/a?x=1&amp;y=2">story</a>' * 40)
    + "\n.leading dot line\n</body></html>"
)


def message(**overrides: Any) -> bytes:
    fields: dict[str, Any] = {
        "from_addr": "The Levant Ledger <news@example.com>",
        "to_addr": "reader@example.org",
        "subject": "Your weekly digest: 12 stories on Syria, Russia and more",
        "text": TEXT,
        "html": HTML,
        "message_id": "<3f2a9c@example.com>",
        "list_id": "<digest.news.example.com>",
        "unsubscribe_url": "https://news.example.com/unsubscribe/abc.def",
        "date": datetime(2026, 11, 28, 6, 0, tzinfo=UTC),
    }
    fields.update(overrides)
    return build_message(**fields)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def canonical(body: str) -> str:
    return body if body.endswith("\n") else body + "\n"


def assert_wire_format(raw: bytes) -> None:
    assert raw.endswith(b"\r\n")
    lines = raw.split(b"\r\n")
    assert all(b"\n" not in line and b"\r" not in line for line in lines), "bare CR or LF"
    assert all(len(line) <= 998 for line in lines)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert all(byte < 128 for byte in raw), "8-bit data in a 7-bit message"


# --- build_message -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "from_addr"),
    [
        (
            "Your weekly digest: 12 stories on Syria, Russia and more",
            "The Levant Ledger <news@example.com>",
        ),
        (ACCENTED, "Ṣaḥāfa <news@example.com>"),
        (ARABIC, "نشرة الأخبار <news@example.com>"),
        (ARABIC + " — " + ACCENTED + " " + ARABIC, '"Ledger, The" <news@example.com>'),
    ],
)
def test_build_message_round_trips_through_the_stdlib_parser(subject: str, from_addr: str) -> None:
    raw = message(subject=subject, from_addr=from_addr, unsubscribe_mailto="unsub+abc@example.com")
    assert_wire_format(raw)
    msg = parse(raw)

    assert msg["Subject"] == subject
    (sender,) = msg["From"].addresses
    assert sender.addr_spec == "news@example.com"
    assert sender.display_name == email.utils.parseaddr(from_addr)[0]
    assert msg["To"] == "reader@example.org"
    assert msg["Message-ID"] == "<3f2a9c@example.com>"
    assert b"\r\nDate: Sat, 28 Nov 2026 06:00:00 GMT\r\n" in raw
    assert msg["Date"].datetime == datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Id"] == "<digest.news.example.com>"
    assert msg["List-Unsubscribe"] == (
        "<https://news.example.com/unsubscribe/abc.def>, <mailto:unsub+abc@example.com>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert not msg.defects

    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    for part, original in ((plain, TEXT), (html, HTML)):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.get_content().replace("\r\n", "\n") == canonical(original)
        assert not part.defects


def test_non_ascii_display_name_in_to_and_idn_domain() -> None:
    msg = parse(message(to_addr="Zoë Ḥaddād <zoe@bücher.example>"))
    (to,) = msg["To"].addresses
    assert to.display_name == "Zoë Ḥaddād"
    assert to.addr_spec == "zoe@xn--bcher-kva.example"


def test_long_subjects_fold_and_unfold_exactly() -> None:
    words = " ".join(f"word{i}" for i in range(60))
    unbreakable = "x" * 1500
    for subject in (
        words,
        unbreakable,
        "  padded  twice  ",
        "tab\there",
        "looks like =?utf-8?q?x?=",
    ):
        raw = message(subject=subject)
        assert_wire_format(raw)
        assert parse(raw)["Subject"] == subject


def test_list_unsubscribe_without_mailto_and_list_id_forms() -> None:
    msg = parse(message(list_id="Levant Ledger daily <daily.news.example.com>"))
    assert msg["List-Unsubscribe"] == "<https://news.example.com/unsubscribe/abc.def>"
    assert msg["List-Id"] == "Levant Ledger daily <daily.news.example.com>"
    assert parse(message(list_id="digest.example.com"))["List-Id"] == "<digest.example.com>"


def test_date_is_utc_whatever_zone_it_came_in() -> None:
    beirut = timezone(timedelta(hours=2))
    raw = message(date=datetime(2026, 11, 28, 8, 0, tzinfo=beirut))
    assert b"\r\nDate: Sat, 28 Nov 2026 06:00:00 GMT\r\n" in raw
    naive = message(date=datetime(2026, 11, 28, 6, 0))
    assert b"\r\nDate: Sat, 28 Nov 2026 06:00:00 GMT\r\n" in naive
    assert parse(message(date=None))["Date"].datetime.tzinfo is not None


def test_boundaries_are_unique_per_message() -> None:
    a, b = parse(message()), parse(message())
    assert a.get_boundary() != b.get_boundary()


def test_extra_headers_are_added_and_cannot_override_ours() -> None:
    msg = parse(message(extra_headers={"X-Edition-Id": "42", "X-Topic": "Ṣaḥāfa"}))
    assert msg["X-Edition-Id"] == "42" and msg["X-Topic"] == "Ṣaḥāfa"
    for name in ("Subject", "list-unsubscribe", "Bad Name", "Colon:"):
        with pytest.raises(ValueError):
            message(extra_headers={name: "x"})


@pytest.mark.parametrize(
    "field",
    [
        "subject",
        "to_addr",
        "from_addr",
        "message_id",
        "list_id",
        "unsubscribe_url",
        "unsubscribe_mailto",
    ],
)
@pytest.mark.parametrize("evil", ["\r\nBcc: victim@example.net", "\nBcc: x@y", "\rX: y"])
def test_line_breaks_in_header_values_are_rejected(field: str, evil: str) -> None:
    good = {
        "subject": "Hi",
        "to_addr": "reader@example.org",
        "from_addr": "news@example.com",
        "message_id": "<a@b>",
        "list_id": "<l.example.com>",
        "unsubscribe_url": "https://x.example/u",
        "unsubscribe_mailto": "u@example.com",
    }
    with pytest.raises(ValueError):
        message(**{field: good[field] + evil})
    with pytest.raises(ValueError):
        message(extra_headers={"X-Note": "fine" + evil})


@pytest.mark.parametrize(
    "overrides",
    [
        {"to_addr": "not an address"},
        {"to_addr": "josé@example.org"},  # non-ASCII local part needs SMTPUTF8
        {"message_id": "no-brackets@example.com"},
        {"unsubscribe_url": "/relative/unsubscribe"},
    ],
)
def test_unusable_values_are_rejected(overrides: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        message(**overrides)


def test_make_message_id() -> None:
    ids = {make_message_id("news.example.com") for _ in range(1000)}
    assert len(ids) == 1000
    one = ids.pop()
    assert one.startswith("<") and one.endswith("@news.example.com>") and len(one) > 30
    with pytest.raises(ValueError):
        make_message_id("bad domain>")


# --- SmtpConfig --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpConfig("mail.example.com", 25)),
        ("smtp://127.0.0.1:1025", SmtpConfig("127.0.0.1", 1025)),
        ("smtps://relay.example.com", SmtpConfig("relay.example.com", 465, ssl=True)),
        (
            "smtp://ed%40news:p%40ss%3Aw0rd@relay.example.com:587?starttls=true",
            SmtpConfig("relay.example.com", 587, "ed@news", "p@ss:w0rd", starttls=True),
        ),
        ("smtps://u:@h:2465?timeout=5", SmtpConfig("h", 2465, "u", "", ssl=True, timeout=5.0)),
    ],
)
def test_smtp_config_from_url(url: str, expected: SmtpConfig) -> None:
    assert SmtpConfig.from_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail.example.com", "smtp://"),
        ("mail.example.com:25", "smtp://"),
        ("smtp://", "no host"),
        ("smtps://h?starttls=true", "starttls"),
        ("smtp://h?starttls=maybe", "starttls"),
        ("smtp://h?verify=no", "verify"),
        ("smtp://h:notaport", "port"),
    ],
)
def test_smtp_config_rejects_bad_urls_clearly(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmtpConfig.from_url(url)


def test_smtp_config_repr_hides_the_password() -> None:
    assert "hunter2" not in repr(SmtpConfig.from_url("smtps://u:hunter2@h"))


# --- a real SMTP server on loopback ------------------------------------------------------


class Recorder:
    """aiosmtpd handler that records what arrives and can be told to refuse."""

    def __init__(self, pipelining: bool = False) -> None:
        self.pipelining = pipelining
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.ehlos = 0
        self.quits = 0
        self.rsets = 0
        self.mechanisms: list[str] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply: str | None = None
        self.data_replies: dict[str, str] = {}  # by recipient: refuse that message's data

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001
        self.ehlos += 1  # our client says EHLO once per plain connection
        session.host_name = hostname
        if self.pipelining:  # as real relays do; aiosmtpd reads commands one at a time anyway
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        if self.data_reply:
            return self.data_reply
        if envelope.rcpt_tos and envelope.rcpt_tos[0] in self.data_replies:
            return self.data_replies[envelope.rcpt_tos[0]]
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Ok: queued"

    async def handle_RSET(self, server, session, envelope):  # noqa: ANN001
        self.rsets += 1
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):  # noqa: ANN001
        self.quits += 1
        return "221 Bye"

    def authenticate(self, server, session, envelope, mechanism, auth_data):  # noqa: ANN001
        self.mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"editor",
            b"s3cr:t@pw",
        )
        return AuthResult(success=ok, handled=False)


class IdleTimeoutSMTP(SMTP):
    """Like Postfix: say 421 before closing an idle session."""

    def _timeout_cb(self) -> None:
        assert self.transport is not None
        self.transport.write(b"421 4.4.2 relay.example Error: timeout exceeded\r\n")
        self.transport.close()


class _Controller(Controller):
    def __init__(self, handler: Any, smtp_class: type[SMTP] = SMTP, **kwargs: Any) -> None:
        self.smtp_class = smtp_class
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        return self.smtp_class(self.handler, **self.SMTP_kwargs)


@dataclass
class Relay:
    port: int
    handler: Recorder

    def url(self, scheme: str = "smtp", auth: str = "", query: str = "") -> str:
        return f"{scheme}://{auth}127.0.0.1:{self.port}{query}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def relay_server(handler: Recorder | None = None, **kwargs: Any) -> Iterator[Relay]:
    handler = handler or Recorder()
    port = free_port()
    controller = _Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield Relay(port, handler)
    finally:
        controller.stop()


@pytest.fixture(params=["sequential", "pipelined"])
def relay(request: pytest.FixtureRequest) -> Iterator[Relay]:
    """A relay without PIPELINING (MAIL, RCPT, DATA one round trip each) and one with it."""
    with relay_server(Recorder(pipelining=request.param == "pipelined")) as r:
        yield r


def send_digest(
    transport: SmtpTransport, to: str = "reader@example.org", subject: str = "Digest"
) -> bytes:
    raw = message(to_addr=to, subject=subject, message_id=make_message_id("example.com"))
    send_one(transport, "news@example.com", to, raw)
    return raw


def test_sends_many_messages_over_one_connection(relay: Relay) -> None:
    with SmtpTransport(SmtpConfig.from_url(relay.url())) as transport:
        sent = [
            send_digest(transport, f"reader{i}@example.org", f"Digest {i} — سوريا")
            for i in range(3)
        ]
    assert relay.handler.ehlos == 1
    assert relay.handler.quits == 1
    assert len(relay.handler.messages) == 3
    for i, ((mail_from, rcpts, content), raw) in enumerate(
        zip(relay.handler.messages, sent, strict=True)
    ):
        assert mail_from == "news@example.com" and rcpts == [f"reader{i}@example.org"]
        assert content.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")  # dot-stuffing undone
        got = parse(content)
        assert got["Subject"] == f"Digest {i} — سوريا"
        plain, html = got.iter_parts()
        assert html.get_content().replace("\r\n", "\n") == canonical(HTML)


def test_lines_starting_with_a_dot_arrive_intact(relay: Relay) -> None:
    # The transport dot-stuffs (RFC 5321 4.5.2) itself rather than through smtplib.
    text = ".\n..two dots\n.leading\nlast ."
    raw = message(text=text, html=".\n<p>.x</p>")
    assert raw.startswith(b"From")
    with SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
        send_one(t, "news@example.com", "reader@example.org", raw)
        send_one(t, "news@example.com", "reader@example.org", b".starts with a dot\r\nno end")
    first, second = (m[2] for m in relay.handler.messages)
    assert first == raw
    plain, _ = parse(first).iter_parts()
    assert plain.get_content().replace("\r\n", "\n") == text + "\n"
    assert second == b".starts with a dot\r\nno end\r\n"


def test_a_message_whose_header_starts_a_line_with_a_dot_is_dot_stuffed(relay: Relay) -> None:
    # Our bodies never start a line with "." (mime writes "=2E"), so the transport sends
    # them as they are; an extra header's name can, and then the message is stuffed as any.
    plain = message(text=".body\n")
    dotted = message(text=".body\n", extra_headers={".X-Odd": "1"})
    assert type(plain) is DotSafe and b"\n." not in plain
    assert type(dotted) is not DotSafe and b"\r\n.X-Odd: 1\r\n" in dotted
    with SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
        send_one(t, "news@example.com", "reader@example.org", plain)
        send_one(t, "news@example.com", "reader@example.org", dotted)
    assert [m[2] for m in relay.handler.messages] == [plain, dotted]


def test_envelope_accepts_display_name_forms(relay: Relay) -> None:
    with SmtpTransport(SmtpConfig.from_url(relay.url())) as transport:
        send_one(transport, "The Ledger <news@example.com>", "<reader@example.org>", message())
    assert relay.handler.messages[0][:2] == ("news@example.com", ["reader@example.org"])


def test_reconnects_once_after_the_server_drops_an_idle_connection() -> None:
    with relay_server(timeout=0.3) as relay, SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
        send_digest(t)
        time.sleep(0.8)  # aiosmtpd closes the idle session without a word
        send_digest(t)
        assert relay.handler.ehlos == 2
        assert len(relay.handler.messages) == 2


def test_reconnects_after_a_421_idle_timeout() -> None:
    with relay_server(smtp_class=IdleTimeoutSMTP, timeout=0.3) as relay:
        with SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
            send_digest(t)
            time.sleep(0.8)
            send_digest(t)
        assert relay.handler.ehlos == 2
        assert len(relay.handler.messages) == 2


def test_rcpt_550_is_permanent_and_the_session_stays_usable(relay: Relay) -> None:
    relay.handler.rcpt_replies["gone@example.org"] = "550 5.1.1 no such user"
    with SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
        with pytest.raises(PermanentFailure) as err:
            send_digest(t, "gone@example.org")
        assert err.value.code == 550 and err.value.stage == "rcpt"
        assert "no such user" in err.value.reason
        send_digest(t, "reader@example.org")
    assert relay.handler.rsets >= 1
    assert relay.handler.ehlos == 1
    assert [m[1] for m in relay.handler.messages] == [["reader@example.org"]]


def test_rcpt_451_is_temporary(relay: Relay) -> None:
    relay.handler.rcpt_replies["busy@example.org"] = "451 4.3.0 try later"
    with (
        SmtpTransport(SmtpConfig.from_url(relay.url())) as t,
        pytest.raises(TemporaryFailure) as err,
    ):
        send_digest(t, "busy@example.org")
    assert err.value.code == 451 and "try later" in err.value.reason
    assert not isinstance(err.value, PermanentFailure)


@pytest.mark.parametrize(
    ("reply", "kind"),
    [("451 4.7.1 greylisted", TemporaryFailure), ("554 5.7.1 rejected as spam", PermanentFailure)],
)
def test_data_refusals_are_classified(relay: Relay, reply: str, kind: type) -> None:
    relay.handler.data_reply = reply
    with SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
        with pytest.raises(kind) as err:
            send_digest(t)
        assert err.value.code == int(reply[:3]) and err.value.stage == "data"
        relay.handler.data_reply = None
        send_digest(t)
    assert len(relay.handler.messages) == 1 and relay.handler.ehlos == 1


def pipelined(transport: SmtpTransport, recipients: list[str], flush: bool = True,
              pause: float = 0.0) -> tuple[list[tuple[str, Any]], dict[str, bytes]]:
    """Push one message to each recipient, waiting ``pause`` after the first, then flush
    (or not); (outcomes in order, raw messages)."""
    outcomes: list[tuple[str, Any]] = []
    raw = {}
    for i, to in enumerate(recipients):
        raw[to] = message(to_addr=to, subject=f"Digest for {to}",
                          message_id=make_message_id("example.com"))
        outcomes += transport.push("news@example.com", to, raw[to], to)
        if i == 0:
            time.sleep(pause)
    if flush:
        outcomes += transport.flush()
    return outcomes, raw


def test_a_pipeline_hands_over_every_message_once_in_order(relay: Relay) -> None:
    readers = [f"reader{i}@example.org" for i in range(5)]
    with SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
        outcomes, raw = pipelined(t, readers)
    assert outcomes == [(to, None) for to in readers]
    assert [(m[0], m[1]) for m in relay.handler.messages] == [
        ("news@example.com", [to]) for to in readers]
    for (_, (to,), content) in relay.handler.messages:
        assert content == raw[to]
    assert relay.handler.ehlos == 1


def test_a_refusal_mid_pipeline_fails_that_message_alone(relay: Relay) -> None:
    readers = [f"reader{i}@example.org" for i in range(6)]
    relay.handler.rcpt_replies["reader1@example.org"] = "550 5.1.1 no such user"
    relay.handler.data_replies["reader3@example.org"] = "554 5.7.1 rejected as spam"
    relay.handler.data_replies["reader4@example.org"] = "451 4.7.1 greylisted"
    with SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
        outcomes, _ = pipelined(t, readers)
    got = {to: exc for to, exc in outcomes}
    assert sorted(got) == readers and len(outcomes) == len(readers)
    assert isinstance(got["reader1@example.org"], PermanentFailure)
    assert (got["reader1@example.org"].code, got["reader1@example.org"].stage) == (550, "rcpt")
    assert isinstance(got["reader3@example.org"], PermanentFailure)
    assert (got["reader3@example.org"].code, got["reader3@example.org"].stage) == (554, "data")
    assert type(got["reader4@example.org"]) is TemporaryFailure
    assert (got["reader4@example.org"].code, got["reader4@example.org"].stage) == (451, "data")
    assert [to for to, exc in outcomes if exc is None] == [
        "reader0@example.org", "reader2@example.org", "reader5@example.org"]
    assert [m[1] for m in relay.handler.messages] == [
        ["reader0@example.org"], ["reader2@example.org"], ["reader5@example.org"]]
    assert relay.handler.ehlos == 1


def test_a_pipeline_outlives_a_relay_that_drops_the_session() -> None:
    # The relay times out the session while a message waits for its data: that message is
    # a temporary failure (not sent: it is retried later), the next starts a new session.
    handler = Recorder(pipelining=True)
    with (relay_server(handler, smtp_class=IdleTimeoutSMTP, timeout=0.3) as relay,
          SmtpTransport(SmtpConfig.from_url(relay.url())) as t):
        outcomes, _ = pipelined(t, ["first@example.org", "second@example.org"], pause=0.8)
    (first, lost), (second, ok) = outcomes
    assert (first, second, ok) == ("first@example.org", "second@example.org", None)
    assert type(lost) is TemporaryFailure and lost.stage == "data"
    assert [m[1] for m in handler.messages] == [["second@example.org"]]
    assert handler.ehlos == 2


def test_closing_with_a_message_open_sends_nothing(relay: Relay) -> None:
    with SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
        outcomes, _ = pipelined(t, ["open@example.org"], flush=False)
        t.close()
        send_digest(t, "next@example.org")  # the transport goes on (a new session if dropped)
    got = [m[1] for m in relay.handler.messages]
    if relay.handler.pipelining:  # the message waited for its data: dropped with the session
        assert outcomes == [] and got == [["next@example.org"]]
    else:  # nothing could go with its data, so it went at once
        assert outcomes == [("open@example.org", None)]
        assert got == [["open@example.org"], ["next@example.org"]]


def test_an_open_message_keeps_the_session_for_its_thread(relay: Relay) -> None:
    # Another thread's message must not go with this one's data turn: it waits for the flush.
    with SmtpTransport(SmtpConfig.from_url(relay.url())) as t:
        first = t.push("news@example.com", "first@example.org", message(), "first")
        other = threading.Thread(target=send_digest, args=(t, "second@example.org"))
        other.start()
        other.join(0.5)
        # Pipelined, the first message waits for its data, and the other thread with it.
        assert other.is_alive() == relay.handler.pipelining
        assert first + t.flush() == [("first", None)]
        other.join(10)
    assert [m[1] for m in relay.handler.messages] == [
        ["first@example.org"], ["second@example.org"]]


def test_unreachable_relay_is_a_temporary_failure() -> None:
    t = SmtpTransport(SmtpConfig("127.0.0.1", free_port(), timeout=2))
    with pytest.raises(TemporaryFailure) as err:
        send_one(t, "news@example.com", "reader@example.org", message())
    assert err.value.stage == "connect" and err.value.code is None


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth(mechanism: str) -> None:
    handler = Recorder()
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    with relay_server(
        handler,
        authenticator=handler.authenticate,
        auth_required=True,
        auth_require_tls=False,
        auth_exclude_mechanism=[other],
    ) as relay:
        # Credentials over plain SMTP only because the URL says so (tests/security/test_smtp_tls).
        with SmtpTransport(SmtpConfig.from_url(relay.url(auth="editor:s3cr%3At%40pw@",
                                                         query="?insecure=true"))) as t:
            send_digest(t)
            send_digest(t)
        assert handler.mechanisms == [mechanism]
        assert len(handler.messages) == 2

        with pytest.raises(AuthenticationFailure) as err:
            send_one(SmtpTransport(SmtpConfig.from_url(relay.url(auth="editor:wrong@",
                                                                 query="?insecure=true"))),
                     "news@example.com", "reader@example.org", message())
        assert err.value.code == 535 and err.value.stage == "auth"
        assert isinstance(err.value, PermanentFailure)

        # No credentials: the relay answers 530 at MAIL FROM.
        with (
            pytest.raises(PermanentFailure) as err,
            SmtpTransport(SmtpConfig.from_url(relay.url())) as t,
        ):
            send_digest(t)
        assert err.value.code == 530


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not available to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    return ctx


def test_smtps(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust our self-signed relay
    with relay_server(ssl_context=server_context(certificate)) as relay:
        with SmtpTransport(SmtpConfig.from_url(relay.url("smtps"))) as t:
            send_digest(t)
            send_digest(t)
        assert len(relay.handler.messages) == 2 and relay.handler.ehlos == 1


def test_starttls_with_auth(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    handler = Recorder()
    with relay_server(
        handler,
        tls_context=server_context(certificate),
        require_starttls=True,
        authenticator=handler.authenticate,
        auth_required=True,
    ) as relay:
        url = relay.url(auth="editor:s3cr%3At%40pw@", query="?starttls=true")
        with SmtpTransport(SmtpConfig.from_url(url)) as t:
            send_digest(t)
        assert len(handler.messages) == 1 and handler.mechanisms
        assert handler.ehlos == 2  # before and after STARTTLS


def test_untrusted_certificate_is_a_permanent_failure(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with relay_server(ssl_context=server_context(certificate)) as relay:
        with pytest.raises(PermanentFailure) as err:
            send_one(SmtpTransport(SmtpConfig.from_url(relay.url("smtps"))),
                     "news@example.com", "reader@example.org", message())
        assert err.value.stage == "connect" and "certificate" in err.value.reason


# --- one transport per process -----------------------------------------------------------


def test_get_transport_is_per_process_and_per_url() -> None:
    url = "smtp://127.0.0.1:2525"
    first = get_transport(url)
    assert get_transport(url) is first
    assert get_transport("smtp://127.0.0.1:2526") is not first

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must build its own transport, never reuse the parent's socket
        try:
            os.write(write, b"fresh" if get_transport(url) is not first else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"fresh"


# --- one template, many readers ---------------------------------------------------------

def _boundary_free(raw: bytes) -> bytes:
    return re.sub(rb"=_nl_[0-9a-f]{24}", b"BOUNDARY", raw)


@pytest.mark.parametrize("email", ["reader@example.org", "o'brien+news@example.org",
                                   "long." + "x" * 60 + "@example.org"])
def test_a_template_personalised_is_the_message_built_whole(email: str) -> None:
    """The bodies are encoded once per content and only placeholder lines per reader: the
    bytes must be those of encoding the personalised bodies whole (quoted-printable is line by
    line, so this holds; a line longer than 76 octets gets its soft breaks either way)."""
    unsubscribe = "https://news.example.com/unsubscribe/" + "t" * 90
    # Shared: encoded once per process, like an article's inlined HTML in a digest.
    article = Shared("<p>" + "An article long enough to be encoded once and shared. " * 12
                     + "</p>\n")
    text = ["Digest\n.dot line\n" + "w" * 200 + "\nSent to ", ("email",), ". Leave: ",
            ("unsubscribe_url",), "\nthe end"]
    html = ["<p>Café</p>\n", article, "<p>", "Sent to ", ("email",), ' <a href="',
            ("unsubscribe_url",), '">unsubscribe</a></p>\n', article, "<p>سوريا</p>\n", article]
    values = {"email": email, "unsubscribe_url": unsubscribe}
    when = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    template = MessageTemplate(from_addr="The Ledger <news@example.com>", subject="Digest",
                               text=text, html=html, list_id="<digest.news.example.com>")
    fast = template.message(to_addr=email, message_id="<1@example.com>",
                            unsubscribe_url=unsubscribe, values=values, date=when)

    def whole(parts: list, escape: bool) -> str:
        return "".join(p if isinstance(p, str) else
                       (html_escape(values[p[0]]) if escape else values[p[0]]) for p in parts)

    slow = build_message(from_addr="The Ledger <news@example.com>", to_addr=email,
                         subject="Digest", text=whole(text, False), html=whole(html, True),
                         message_id="<1@example.com>", list_id="<digest.news.example.com>",
                         unsubscribe_url=unsubscribe, date=when)
    assert _boundary_free(fast) == _boundary_free(slow)
    head, _, bodies = fast.partition(b"\r\n\r\n")
    assert max(len(line) for line in head.split(b"\r\n")) <= 998  # a long URL is not folded
    assert max(len(line) for line in bodies.split(b"\r\n")) <= 76


def test_a_template_refuses_to_send_an_unfilled_placeholder() -> None:
    template = MessageTemplate(from_addr="news@example.com", subject="Digest",
                               text=["Hi ", ("email",), "\n"], html=["<p>x</p>"],
                               list_id="<digest.news.example.com>")
    with pytest.raises(KeyError, match="email"):
        template.message(to_addr="r@example.org", message_id="<1@example.com>",
                         unsubscribe_url="https://news.example.com/u/x", values={})


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_shared_chunks_cut_anywhere_encode_as_the_whole_body(data) -> None:
    """A Shared chunk need not be whole lines (the layout around a digest's articles ends
    mid-line): its whole lines are encoded once per process, its ends with their neighbours,
    and the message is still byte for byte the one built from the whole body."""
    line = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"),
                   min_size=20, max_size=120)
    lines = data.draw(st.lists(line, min_size=40, max_size=80))
    body = "\n".join(lines) + ("\n" * data.draw(st.integers(0, 1)))
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(body)), max_size=4))))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    shared = [Shared(p) if data.draw(st.booleans()) else p for p in pieces if p]
    when = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    fast = MessageTemplate(from_addr="news@example.com", subject="Digest", text=shared,
                           html=shared, list_id="<digest.news.example.com>").message(
        to_addr="r@example.org", message_id="<1@example.com>",
        unsubscribe_url="https://news.example.com/u/1", values={}, date=when)
    slow = build_message(from_addr="news@example.com", to_addr="r@example.org",
                         subject="Digest", text=body, html=body, message_id="<1@example.com>",
                         list_id="<digest.news.example.com>",
                         unsubscribe_url="https://news.example.com/u/1", date=when)
    assert _boundary_free(fast) == _boundary_free(slow)
