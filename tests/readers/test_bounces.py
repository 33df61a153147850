"""Bounces (RFC 3464 DSNs) and complaints (RFC 5965 ARF) suppress the right readers.

The samples in tests/data are of our own making, shaped like what Postfix, Exim, sendmail
and a mailbox provider's feedback loop send. Parsing is checked on its own; everything
that touches readers runs on each backend against a real database, and one test bounces
a digest that really went through the worker and the SMTP sink. A report acts only when it
names a message we sent (its returned Message-ID with that delivery's address here; VERP
tokens in tests/security/test_verp.py); an address alone changes nothing.
"""

from __future__ import annotations

import mailbox
import re
from datetime import timedelta
from email.utils import format_datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from newsletter import cli, db, tokens
from newsletter.models import (
    BounceEvent,
    ConsentEvent,
    Delivery,
    Edition,
    Reader,
    Suppression,
    utcnow,
)
from newsletter.readers import bounces, consent
from newsletter.readers.bounce_reports import parse
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log
from tests.helpers import DATA, url_of, wait_edition
from tests.test_pipeline import ARTICLES, subscribe_and_confirm

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

HARD_ID = "<5b0e6c0f8a9d4e21b7c3a1f2d4e6b8a0@news.example>"
SOFT_ID = "<9c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f@news.example>"
ABUSE_ID = "<7f6e5d4c3b2a19087f6e5d4c3b2a1908@news.example>"
REDACTED_ID = "<1122334455667788990011223344aabb@news.example>"
ALIAS_ID = "<e4d3c2b1a09f8e7d6c5b4a3928171605@news.example>"
DELAYED_ID = "<0a1b2c3d4e5f60718293a4b5c6d7e8f9@news.example>"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("name, expected", [
    ("dsn-hard-user-unknown.eml", [("hard", "nobody.here@example.org", "5.1.1", HARD_ID)]),
    ("dsn-soft-mailbox-full.eml", [("soft", "full.box@example.net", "4.2.2", SOFT_ID)]),
    ("dsn-delayed.eml", [("soft", "slow.host@example.com", "4.4.1",
                          "<0a1b2c3d4e5f60718293a4b5c6d7e8f9@news.example>")]),
    # One recipient of an alias failed, the other got it: only the failure counts.
    ("dsn-two-recipients.eml", [("hard", "left.the.company@example.com", "5.1.1",
                                 "<e4d3c2b1a09f8e7d6c5b4a3928171605@news.example>")]),
    ("arf-abuse.eml", [("complaint", "angry.reader@example.com", None, ABUSE_ID)]),
    # The provider removed the address: only our Message-ID can say who complained.
    ("arf-redacted.eml", [("complaint", None, None, REDACTED_ID)]),
    ("autoreply.eml", []),
])
def test_each_sample_gives_the_right_reports(name, expected) -> None:
    reports = parse(sample(name))
    assert [(r.kind, r.recipient, r.status, r.original_message_id) for r in reports] == expected
    for r in reports:
        assert r.kind != "complaint" or r.feedback_type == "abuse"
        assert r.diagnostic  # what the receiving side said, for the ledger


def test_hard_sample_keeps_the_diagnostic_and_its_date() -> None:
    (report,) = parse(sample("dsn-hard-user-unknown.eml"))
    assert report.diagnostic.startswith("550 5.1.1 <nobody.here@example.org>: Recipient")
    assert "User unknown in virtual mailbox table" in report.diagnostic
    assert report.reported_at.isoformat() == "2026-11-28T06:02:14+00:00"


@pytest.mark.parametrize("status, diagnostic, kind", [
    ("5.1.1", "550 5.1.1 user unknown", "hard"),
    ("5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound", "hard"),
    ("5.4.4", "550 5.4.4 domain does not exist", "hard"),
    # Not about the address: a full mailbox, a blocklisted IP, a spam filter.
    ("5.2.2", "552 5.2.2 mailbox full", "soft"),
    ("5.7.1", "554 5.7.1 Service unavailable; Client host blocked using zen.example", "soft"),
    ("4.2.2", "452 4.2.2 over quota", "soft"),
    ("", "550 no such user here", "hard"),  # no Status: the SMTP reply decides
    ("", "451 try again later", "soft"),
])
def test_failed_status_classes(status, diagnostic, kind) -> None:
    raw = sample("dsn-hard-user-unknown.eml").decode()
    raw = raw.replace("Status: 5.1.1\n", f"Status: {status}\n" if status else "")
    raw = re.sub(r"Diagnostic-Code: smtp; 550 5\.1\.1 .*?table\n",
                 f"Diagnostic-Code: smtp; {diagnostic}\n", raw, flags=re.S)
    (report,) = parse(raw.encode())
    assert report.kind == kind and report.diagnostic == diagnostic


def test_delivered_only_and_non_reports_give_nothing() -> None:
    delivered = sample("dsn-hard-user-unknown.eml").replace(b"Action: failed",
                                                            b"Action: delivered")
    assert parse(delivered) == []
    assert parse(b"") == [] and parse(b"\x00\xff not a message at all") == []
    read_receipt = sample("dsn-delayed.eml").replace(
        b"message/delivery-status", b"message/disposition-notification")
    assert parse(read_receipt) == []


# ---------------------------------------------------------------- policy, on each backend

def add_reader(session, email: str, status: str = "active") -> Reader:
    reader = Reader(email=email, status=status, frequency="weekly", source="test",
                    confirmed_at=utcnow())
    session.add(reader)
    session.flush()
    return reader


def add_delivery(session, reader: Reader, message_id: str, status: str = "sent") -> Delivery:
    edition = Edition(frequency="weekly", source="test", status="sending")
    session.add(edition)
    session.flush()
    delivery = Delivery(edition_id=edition.id, reader_id=reader.id, status=status,
                        message_id=message_id, content_key="k")
    session.add(delivery)
    session.flush()
    return delivery


def ingest(raw: bytes, source: str = "mailbox") -> bounces.IngestResult:
    with db.session_scope() as session:
        return bounces.ingest(session, raw, source=source)


def withdrawals(email: str) -> list[ConsentEvent]:
    with db.session_scope() as session:
        return list(session.scalars(select(ConsentEvent).where(
            ConsentEvent.email_hash == consent.email_hash(email),
            ConsentEvent.action == "withdrawn")))


def state(email: str) -> tuple[str, str | None]:
    """The reader's status and the reason their address is suppressed, if it is."""
    with db.session_scope() as session:
        status = session.scalar(select(Reader.status).where(Reader.email == email))
        reason = session.scalar(select(Suppression.reason).where(
            Suppression.email_hash == consent.email_hash(email)))
    return status, reason


def count(model) -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_hard_bounce_suppresses_at_once_and_stops_queued_deliveries(fresh) -> None:
    with db.session_scope() as session:
        gone = add_reader(session, "nobody.here@example.org")
        bounced = add_delivery(session, gone, HARD_ID)
        queued = add_delivery(session, gone, "<queued.1@news.example>", status="queued")
        retry = add_delivery(session, gone, "<retry.1@news.example>", status="retry")
        other = add_reader(session, "still.fine@example.org")
        other_queued = add_delivery(session, other, "<queued.2@news.example>", status="queued")

    result = ingest(sample("dsn-hard-user-unknown.eml"))

    assert (result.hard, result.soft, result.complaints, result.suppressed) == (1, 0, 0, 1)
    assert state("nobody.here@example.org") == ("unsubscribed", "bounce")
    assert state("still.fine@example.org") == ("active", None)
    (event,) = withdrawals("nobody.here@example.org")
    assert (event.source, event.method, event.edition_id) == ("email", "bounce",
                                                              bounced.edition_id)
    assert event.details["status"] == "5.1.1" and "User unknown" in event.details["diagnostic"]
    with db.session_scope() as session:
        statuses = {d.id: d.status for d in session.scalars(select(Delivery))}
        (row,) = session.scalars(select(BounceEvent))
    assert statuses == {bounced.id: "sent", queued.id: "suppressed", retry.id: "suppressed",
                        other_queued.id: "queued"}
    assert (row.kind, row.status, row.reader_id, row.delivery_id, row.message_id) == (
        "hard", "5.1.1", gone.id, bounced.id, HARD_ID)
    # The audit row outlives an erasure, so it keeps no address, only the domain.
    assert "nobody.here" not in row.diagnostic and "@example.org" in row.diagnostic


def test_complaints_suppress_by_recipient_or_by_message_id(fresh) -> None:
    with db.session_scope() as session:
        angry = add_reader(session, "angry.reader@example.com")
        about = add_delivery(session, angry, ABUSE_ID)
        queued = add_delivery(session, angry, "<queued.3@news.example>", status="queued")
        quiet = add_reader(session, "jordan.fan@example.com")
        complained = add_delivery(session, quiet, REDACTED_ID)
        unsubscribe = tokens.make("unsubscribe", quiet.id, quiet.email)

    by_address = ingest(sample("arf-abuse.eml"), source="webhook")
    # The provider removed the address: our Message-ID and signed unsubscribe link say who.
    by_message = ingest(sample("arf-redacted.eml").replace(b"UNSUBSCRIBE_TOKEN",
                                                           unsubscribe.encode()))

    for result in (by_address, by_message):
        assert (result.complaints, result.hard, result.suppressed, result.ignored) == (1, 0, 1, 0)
    assert state("angry.reader@example.com") == ("unsubscribed", "complaint")
    assert state("jordan.fan@example.com") == ("unsubscribed", "complaint")
    (first,) = withdrawals("angry.reader@example.com")
    (second,) = withdrawals("jordan.fan@example.com")
    assert (first.method, first.edition_id, first.details["via"]) == (
        "complaint", about.edition_id, "webhook")
    assert (second.method, second.edition_id) == ("complaint", complained.edition_id)
    assert first.details["status"] == "abuse"
    with db.session_scope() as session:
        assert session.get(Delivery, queued.id).status == "suppressed"


def soft_dsn(message_id: str, at, action: str = "failed") -> bytes:
    """The mailbox-full sample, about another message of ours, written at ``at``."""
    raw = sample("dsn-soft-mailbox-full.eml").decode()
    raw = raw.replace(SOFT_ID, message_id).replace("Action: failed", f"Action: {action}")
    raw = raw.replace("Date: Sat, 28 Nov 2026 07:15:02 +0000",
                      "Date: " + format_datetime(at, usegmt=True))
    raw = raw.replace("<E1tQzKx-00012a-3B@relay.example.net>",
                      f"<{action}.{message_id.strip('<>')}>")
    return raw.encode()


def test_soft_bounces_suppress_only_when_the_score_is_reached(fresh) -> None:
    with db.session_scope() as session:
        full = add_reader(session, "full.box@example.net")
        add_delivery(session, full, "<queued.4@news.example>", status="queued")
        for n in range(1, 5):
            add_delivery(session, full, f"<soft.{n}@news.example>")
        slow = add_reader(session, "slow.host@example.com")
        for n in range(3):
            add_delivery(session, slow, f"<slow.{n}@news.example>")
    day = (utcnow() - timedelta(days=10)).replace(hour=6, minute=0, second=0, microsecond=0)

    # Three messages bounce on one bad day, one of them twice (a delay notice, then the
    # failure): three soft bounces, but all on one day.
    for n, (msg, hour, action) in enumerate([(1, 0, "delayed"), (1, 1, "failed"),
                                             (2, 3, "failed"), (3, 6, "failed")]):
        result = ingest(soft_dsn(f"<soft.{msg}@news.example>", day + timedelta(hours=hour),
                                 action))
        assert result.suppressed == 0
        assert (result.soft, result.duplicates) == ((0, 1) if n == 1 else (1, 0))
    assert state("full.box@example.net") == ("active", None)

    # A fourth message two days later: three or more on two days within the window.
    result = ingest(soft_dsn("<soft.4@news.example>", day + timedelta(days=2)))
    assert (result.soft, result.suppressed) == (1, 1)
    assert state("full.box@example.net") == ("unsubscribed", "bounce")
    (event,) = withdrawals("full.box@example.net")
    assert event.method == "bounce" and event.details["kind"] == "soft"
    assert (event.details["soft_bounces"], event.details["days"]) == (4, 2)
    with db.session_scope() as session:
        assert session.scalar(select(Delivery.status).where(
            Delivery.message_id == "<queued.4@news.example>")) == "suppressed"

    # Old bounces expire: one two months ago and two recent ones are not three.
    now = utcnow()
    for n, at in enumerate([now - timedelta(days=60), now - timedelta(days=2),
                            now - timedelta(days=1)]):
        raw = soft_dsn(f"<slow.{n}@news.example>", at).replace(
            b"full.box@example.net", b"slow.host@example.com")
        assert ingest(raw).soft == 1
    assert state("slow.host@example.com") == ("active", None)
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(BounceEvent).where(
            BounceEvent.reader_id == slow.id)) == 3


def test_reingesting_is_idempotent(fresh) -> None:
    with db.session_scope() as session:
        add_delivery(session, add_reader(session, "nobody.here@example.org"), HARD_ID)
        add_delivery(session, add_reader(session, "desk@example.com"), ALIAS_ID)
        add_reader(session, "left.the.company@example.com")
        add_reader(session, "still.here@example.com")
    first = ingest(sample("dsn-hard-user-unknown.eml"))
    first += ingest(sample("dsn-two-recipients.eml"))
    again = ingest(sample("dsn-hard-user-unknown.eml"))
    again += ingest(sample("dsn-two-recipients.eml"))

    assert (first.hard, first.unmatched, first.suppressed, first.duplicates) == (1, 1, 1, 0)
    assert (again.hard, again.unmatched, again.suppressed, again.duplicates) == (0, 0, 0, 2)
    assert count(BounceEvent) == 2 and count(Suppression) == 1
    assert len(withdrawals("nobody.here@example.org")) == 1
    # We mailed desk@, an alias: one member failing says nothing about the alias, and the
    # member, a reader of their own, was not sent this message. Nobody else is touched.
    for email in ("desk@example.com", "left.the.company@example.com", "still.here@example.com"):
        assert state(email) == ("active", None)


def test_auto_replies_and_strangers_change_nothing(fresh) -> None:
    with db.session_scope() as session:
        reader = add_reader(session, "someone@example.com")
        add_delivery(session, reader, HARD_ID)  # the auto-reply answers this message
    result = ingest(sample("autoreply.eml"))
    result += ingest(b"Subject: hello\n\nJust a note, not a bounce.\n")
    assert (result.ignored, result.hard, result.soft, result.complaints) == (2, 0, 0, 0)
    assert state("someone@example.com") == ("active", None)
    assert count(BounceEvent) == count(Suppression) == 0

    # A bounce for an address we never mailed (backscatter) is kept, suppresses no one.
    stranger = sample("dsn-two-recipients.eml")
    result = ingest(stranger)
    assert (result.hard, result.unmatched, result.suppressed) == (0, 1, 0)
    assert count(Suppression) == 0
    with db.session_scope() as session:
        (row,) = session.scalars(select(BounceEvent))
    assert row.reader_id is None and row.email_hash == consent.email_hash(
        "left.the.company@example.com")
    assert row.unmatched == "returns a Message-ID we never sent"


def test_bounces_command_reads_a_maildir_an_mbox_and_a_file(fresh, tmp_path) -> None:
    with db.session_scope() as session:
        for email, message_id in [("nobody.here@example.org", HARD_ID),
                                  ("angry.reader@example.com", ABUSE_ID),
                                  ("full.box@example.net", SOFT_ID),
                                  ("slow.host@example.com", DELAYED_ID),
                                  ("desk@example.com", ALIAS_ID)]:
            add_delivery(session, add_reader(session, email), message_id)
        # Named by the alias's bounce, but never sent that message.
        add_reader(session, "left.the.company@example.com")
    maildir = mailbox.Maildir(str(tmp_path / "bounces"), create=True)
    for name in ("dsn-hard-user-unknown.eml", "arf-abuse.eml", "dsn-delayed.eml",
                 "autoreply.eml"):
        maildir.add(sample(name))
    box = mailbox.mbox(str(tmp_path / "bounces.mbox"), create=True)
    for name in ("dsn-two-recipients.eml", "dsn-soft-mailbox-full.eml", "arf-redacted.eml"):
        box.add(sample(name))
    box.flush()
    runner = CliRunner()

    def bounces_command(path) -> tuple[int, str]:
        out = runner.invoke(cli.app, ["bounces", str(path)])
        return out.exit_code, " ".join(out.output.split())  # rich wraps long lines

    code, output = bounces_command(tmp_path / "bounces")
    assert code == 0, output
    assert "hard 1, soft 1, complaints 1, unmatched 0, ignored 1, suppressed 2" in output
    code, output = bounces_command(tmp_path / "bounces.mbox")
    assert code == 0, output
    # The alias member's bounce and the redacted complaint (no unsubscribe link of ours)
    # name no message we sent to their address; the soft bounce is the first.
    assert "hard 0, soft 1, complaints 0, unmatched 2, ignored 0, suppressed 0" in output
    assert state("left.the.company@example.com") == ("active", None)
    assert state("full.box@example.net") == ("active", None)

    code, output = bounces_command(DATA / "dsn-hard-user-unknown.eml")
    assert code == 0 and "(1 already seen)" in output
    code, output = bounces_command(tmp_path / "missing")
    assert code == 2 and "does not exist" in output


def test_webhook(fresh) -> None:
    with db.session_scope() as session:
        add_delivery(session, add_reader(session, "angry.reader@example.com"), ABUSE_ID)
    client = TestClient(create_app())
    raw = sample("arf-abuse.eml")
    rfc822 = {"Content-Type": "message/rfc822"}

    assert client.post("/api/bounces", content=raw, headers=rfc822).status_code == 401
    assert client.post("/api/bounces", content=raw, headers=rfc822 | {
        "Authorization": "Bearer wrong"}).status_code == 401
    assert state("angry.reader@example.com") == ("active", None)
    assert client.post("/api/bounces", json={"raw": "x"}, headers=AUTH).status_code == 415
    assert client.post("/api/bounces", content=b"", headers=AUTH | rfc822).status_code == 422
    big = b"Subject: x\n\n" + b"x" * (10 * 1024 * 1024)
    assert client.post("/api/bounces", content=big, headers=AUTH | rfc822).status_code == 413

    r = client.post("/api/bounces", content=raw, headers=AUTH | rfc822)
    assert r.status_code == 200, r.text
    assert r.json() == {"hard": 0, "soft": 0, "complaints": 1, "unmatched": 0, "ignored": 0,
                        "suppressed": 1, "duplicates": 0}
    assert state("angry.reader@example.com") == ("unsubscribed", "complaint")
    r = client.post("/api/bounces", content=sample("autoreply.eml"),
                    headers=AUTH | {"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.json()["ignored"] == 1
    r = client.post("/api/bounces", content=raw, headers=AUTH | rfc822)
    assert r.json()["duplicates"] == 1 and r.json()["suppressed"] == 0


def postfix_dsn(recipient: str, original: bytes, envelope_sender: str) -> bytes:
    """A Postfix 5.1.1 bounce for ``recipient`` returning ``original`` whole, sent back to
    the message's envelope sender, as a relay does (its MTA adds the Return-Path)."""
    template = sample("dsn-hard-user-unknown.eml").decode()
    marker = "Content-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\n"
    head = template[:template.index(marker) + len(marker)]
    head = head.replace("nobody.here@example.org", recipient)
    head = head.replace("bounces+VERP@news.example", envelope_sender)
    body = f"Return-Path: <{envelope_sender}>\n" + original.decode().replace("\r\n", "\n")
    return (head + body + "\n--4Xk2Lm0Qz9z9sWd.1795845734/mx1.news.example--\n").encode()


def test_bounce_of_a_digest_the_worker_sent(fresh) -> None:
    """A real digest goes out; its recipient's mailbox is gone; only that reader stops."""
    backend = fresh
    client = TestClient(create_app())
    subscribe_and_confirm(client, backend)
    for title, tags in ARTICLES:
        r = client.post("/api/articles", headers=AUTH, json={
            "url": url_of(title), "title": title, "summary": "s", "tags": tags})
        assert r.status_code == 201, r.text
    r = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly"})
    report = wait_edition(client, r.json()["id"])
    assert report["status"] == "done", dump_log(backend)
    received = {r.rcpt_tos[0]: r for r in backend.smtp.received}
    assert "energy.desk@example.org" in received and len(received) >= 2

    bounced = received["energy.desk@example.org"]
    dsn = postfix_dsn("energy.desk@example.org", bounced.data, bounced.mail_from)
    (parsed,) = parse(dsn)
    result = ingest(dsn)

    assert (result.hard, result.suppressed) == (1, 1)
    with db.session_scope() as session:
        statuses = dict(session.execute(select(Reader.email, Reader.status)).all())
        delivery = session.scalar(select(Delivery).where(
            Delivery.message_id == parsed.original_message_id))
    assert {e for e, s in statuses.items() if s != "active"} == {"energy.desk@example.org"}
    assert statuses["energy.desk@example.org"] == "unsubscribed"
    (event,) = withdrawals("energy.desk@example.org")
    assert (event.method, event.edition_id) == ("bounce", report["id"])
    assert delivery.edition_id == report["id"]
