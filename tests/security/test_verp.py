"""Forged bounces and complaints unsubscribe nobody (issue 16, item 3).

Every email goes out from its own envelope sender, bounces+TOKEN@news.example, the token
signed and naming the delivery or notice (VERP). Only a report that names a message we
sent (that token, or the returned Message-ID with the delivery's own address) acts; one
that merely names a reader's address is recorded as unmatched and changes nothing. Each
test sends real email through the worker to the SMTP sink and builds its reports from
what the sink received, on SQLite and on PostgreSQL, through POST /api/bounces and
`newsletter bounces PATH`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email.utils import format_datetime

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter import cli, db
from newsletter.models import BounceEvent, Delivery, Reader, utcnow
from newsletter.web.app import create_app
from tests.conftest import dump_log, post_subscribe
from tests.test_bounces import AUTH, postfix_dsn, sample, state
from tests.test_pipeline import ARTICLES, READERS, subscribe_and_confirm, url_of, wait_edition

RFC822 = {"Content-Type": "message/rfc822"}
VERP = re.compile(r"bounces\+([dcw])(\d+)-[a-z2-7]{16}@news\.example")
NOTHING = {"hard": 0, "soft": 0, "complaints": 0, "unmatched": 1, "ignored": 0,
           "suppressed": 0, "duplicates": 0}


def send_digests(client: TestClient, backend, notices: list | None = None) -> dict:
    """Readers confirm, an edition goes out; the digests the sink received, by recipient
    (and the confirmations and welcomes before them into ``notices``)."""
    sink = backend.smtp
    sink_clear = sink.clear
    sink.clear = lambda: (notices.extend(sink.received) if notices is not None else None,
                          sink_clear())
    try:
        subscribe_and_confirm(client, backend)  # it clears the sink when done
    finally:
        del sink.clear
    notices_count = len(backend.smtp.received)
    for title, tags in ARTICLES:
        r = client.post("/api/articles", headers=AUTH, json={
            "url": url_of(title), "title": title, "summary": "s", "tags": tags})
        assert r.status_code == 201, r.text
    r = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly"})
    assert wait_edition(client, r.json()["id"])["status"] == "done", dump_log(backend)
    return {r.rcpt_tos[0]: r for r in backend.smtp.received[notices_count:]}


def forged(recipient: str, name: str = "dsn-hard-user-unknown.eml") -> bytes:
    """A well-formed report about ``recipient`` that names no message we sent."""
    raw = sample(name).decode()
    for sample_address in ("nobody.here@example.org", "Angry.Reader@example.com",
                           "angry.reader@example.com"):
        raw = raw.replace(sample_address, recipient)
    return raw.encode()


def headers_only_dsn(recipient: str, envelope_sender: str) -> bytes:
    """A bounce that returns no Message-ID: only its VERP address says what it is about."""
    raw = sample("dsn-hard-user-unknown.eml").decode()
    head = raw[:raw.index("Content-Description: Undelivered Message")]
    head = head.replace("nobody.here@example.org", recipient)
    head = head.replace("bounces+VERP@news.example", envelope_sender)
    return (head + "Content-Type: text/rfc822-headers\n\n"
            "Subject: Your weekly digest\n\n"
            "--4Xk2Lm0Qz9z9sWd.1795845734/mx1.news.example--\n").encode()


def post(client: TestClient, raw: bytes) -> dict:
    r = client.post("/api/bounces", content=raw, headers=AUTH | RFC822)
    assert r.status_code == 200, r.text
    return r.json()


def bounces_command(path) -> str:
    out = CliRunner().invoke(cli.app, ["bounces", str(path)])
    assert out.exit_code == 0, out.output
    return " ".join(out.output.split())


def test_every_email_goes_out_from_its_own_signed_bounce_address(fresh) -> None:
    client = TestClient(create_app())
    notices: list = []
    digests = send_digests(client, fresh, notices)
    senders = [r.mail_from for r in notices + fresh.smtp.received]
    kinds = [VERP.fullmatch(s).group(1) if VERP.fullmatch(s) else s for s in senders]
    # A confirmation and a welcome for each reader, then their digests.
    assert sorted(kinds) == sorted(["c"] * len(READERS) + ["w"] * len(READERS)
                                   + ["d"] * len(digests)), senders
    assert len(set(senders)) == len(senders)
    assert all(len(s.partition("@")[0]) <= 64 for s in senders)
    with db.session_scope() as session:
        for email, received in digests.items():
            delivery_id = int(VERP.fullmatch(received.mail_from).group(2))
            delivery = session.get(Delivery, delivery_id)
            assert session.get(Reader, delivery.reader_id).email == email
            assert received.message["Message-ID"] == delivery.message_id


def test_reports_naming_only_an_address_change_nothing(fresh, tmp_path) -> None:
    client = TestClient(create_app())
    digests = send_digests(client, fresh)
    victim, other = sorted(digests)[:2]
    token_of_other = digests[other].mail_from
    attacks = {
        "address only": forged(victim),
        "complaint, address only": forged(victim, "arf-abuse.eml"),
        "made-up token": forged(victim).replace(
            b"bounces+VERP@news.example",
            VERP.sub(lambda m: f"bounces+{m[1]}{m[2]}-aaaaaaaaaaaaaaaa@news.example",
                     digests[victim].mail_from).encode()),
        # A genuine token of another reader's delivery does not condemn the victim.
        "another reader's token": forged(victim).replace(b"bounces+VERP@news.example",
                                                         token_of_other.encode()),
    }
    for n, (attack, raw) in enumerate(attacks.items()):
        raw = raw.replace(b"Message-Id: <2026", f"Message-Id: <{n}.2026".encode())
        assert post(client, raw) == NOTHING, attack
        path = tmp_path / f"{n}.eml"
        path.write_bytes(re.sub(rb"(?im)^(message-id: <)", rb"\1cli.", raw, count=1))
        assert "hard 0, soft 0, complaints 0, unmatched 1, ignored 0, suppressed 0" \
            in bounces_command(path), attack
    for email in digests:
        assert state(email) == ("active", None)
    with db.session_scope() as session:
        rows = list(session.scalars(select(BounceEvent)))
    assert len(rows) == 2 * len(attacks)
    assert all(r.reader_id is None and r.delivery_id is None and r.unmatched for r in rows)


def test_a_bounce_back_to_a_delivery_s_address_suppresses_that_reader(fresh, tmp_path) -> None:
    client = TestClient(create_app())
    digests = send_digests(client, fresh)
    by_api, by_cli, *others = sorted(digests)

    # Through the API, a bounce that returns only headers: the token alone says who.
    answer = post(client, headers_only_dsn(by_api, digests[by_api].mail_from))
    assert (answer["hard"], answer["unmatched"], answer["suppressed"]) == (1, 0, 1)
    # Through the command, a bounce returning the whole digest (Return-Path and all).
    path = tmp_path / "bounce.eml"
    path.write_bytes(postfix_dsn(by_cli, digests[by_cli].data, digests[by_cli].mail_from))
    assert "hard 1, soft 0, complaints 0, unmatched 0, ignored 0, suppressed 1" \
        in bounces_command(path)

    assert state(by_api) == state(by_cli) == ("unsubscribed", "bounce")
    assert all(state(email) == ("active", None) for email in others)
    with db.session_scope() as session:
        rows = {r.delivery_id: r for r in session.scalars(select(BounceEvent))}
    assert {int(VERP.fullmatch(digests[e].mail_from).group(2)) for e in (by_api, by_cli)} \
        == set(rows) and not any(r.unmatched for r in rows.values())


def test_a_complaint_carrying_our_message_counts_by_its_return_path(fresh) -> None:
    client = TestClient(create_app())
    digests = send_digests(client, fresh)
    reader = sorted(digests)[0]
    original = digests[reader]
    # The provider redacted the address (no Original-Rcpt-To, To blanked) but returned
    # the message as its MTA stored it, Return-Path first.
    raw = sample("arf-redacted.eml").decode()
    head = raw[:raw.index("Content-Type: text/rfc822-headers")]
    returned = (f"Return-Path: <{original.mail_from}>\n"
                + original.data.decode().replace("\r\n", "\n").replace(reader, "redacted"))
    arf = (head + "Content-Type: message/rfc822\n\n" + returned
           + "\n------=_Part_88123--\n").encode()
    answer = post(client, arf)
    assert (answer["complaints"], answer["unmatched"], answer["suppressed"]) == (1, 0, 1)
    assert state(reader) == ("unsubscribed", "complaint")
    assert all(state(e) == ("active", None) for e in digests if e != reader)


def test_a_bounced_confirmation_counts_and_a_forged_one_does_not(fresh) -> None:
    client = TestClient(create_app())
    # The seed article makes the topics; then two people sign up and are sent a confirmation.
    r = client.post("/api/articles", headers=AUTH, json={
        "url": url_of("Seed"), "title": "Seed", "summary": "s", "tags": ["Energy"]})
    assert r.status_code == 201, r.text
    assert client.post("/api/topics", headers=AUTH, json={"name": "Energy"}).status_code == 201
    for email in ("typo@example.org", "real.person@example.org"):
        r = post_subscribe(client, email=email, topics=["energy"], frequency="weekly",
                           consent="yes")
        assert r.status_code == 200, r.text
    fresh.smtp.wait_for(2)
    confirmation = {r.rcpt_tos[0]: r for r in fresh.smtp.received}
    assert VERP.fullmatch(confirmation["typo@example.org"].mail_from).group(1) == "c"

    answer = post(client, postfix_dsn("typo@example.org", confirmation["typo@example.org"].data,
                                      confirmation["typo@example.org"].mail_from))
    assert (answer["hard"], answer["suppressed"]) == (1, 1)
    assert post(client, forged("real.person@example.org")) == NOTHING
    assert state("typo@example.org") == ("unsubscribed", "bounce")
    assert state("real.person@example.org") == ("pending", None)


def test_forged_soft_bounces_never_score(fresh) -> None:
    client = TestClient(create_app())
    digests = send_digests(client, fresh)
    reader = sorted(digests)[0]
    day = utcnow() - timedelta(days=6)
    for n in range(6):  # twice the limit, on six different days
        raw = forged(reader, "dsn-soft-mailbox-full.eml").replace(
            b"full.box@example.net", reader.encode()).decode()
        raw = raw.replace("Date: Sat, 28 Nov 2026 07:15:02 +0000",
                          "Date: " + format_datetime(day + timedelta(days=n), usegmt=True))
        raw = raw.replace("<9c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f@news.example>",
                          f"<forged.{n}@news.example>")
        answer = post(client, raw.encode())
        assert (answer["soft"], answer["unmatched"], answer["suppressed"]) == (0, 1, 0)
    assert state(reader) == ("active", None)
    with db.session_scope() as session:
        assert session.scalars(select(BounceEvent.reader_id)).all() == [None] * 6


def test_a_bounce_of_mail_sent_before_a_key_rotation_still_matches(fresh, monkeypatch) -> None:
    """Bounces arrive days late: a token signed with a key still listed in SECRET_KEYS
    matches; once that key is dropped, the report is unmatched and changes nothing."""
    from newsletter.config import reload_settings
    from tests.conftest import SECRET_KEY

    client = TestClient(create_app())
    digests = send_digests(client, fresh)
    still_listed, dropped, *others = sorted(digests)
    newer = "rotated-secret-key-0123456789abcdef0123456789"
    monkeypatch.setenv("NEWSLETTER_SECRET_KEYS", f"{newer},{SECRET_KEY}")
    reload_settings()
    try:
        answer = post(client, headers_only_dsn(still_listed, digests[still_listed].mail_from))
        assert (answer["hard"], answer["unmatched"], answer["suppressed"]) == (1, 0, 1)
        monkeypatch.setenv("NEWSLETTER_SECRET_KEYS", newer)
        reload_settings()
        assert post(client, headers_only_dsn(dropped, digests[dropped].mail_from)) == NOTHING
    finally:
        monkeypatch.delenv("NEWSLETTER_SECRET_KEYS")
        reload_settings()
    assert state(still_listed) == ("unsubscribed", "bounce")
    assert all(state(email) == ("active", None) for email in [dropped, *others])
