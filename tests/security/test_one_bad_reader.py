"""Issue 16, item 7: one bad reader never stops the others.

An address no message can carry (letters outside ASCII before the @, when the relay has no
SMTPUTF8: NEWSLETTER_SMTP_UTF8, off by default) is refused at the form and in an import;
an international domain is fine (it goes as IDNA). And when one reader's confirmation
cannot be built or sent at all, that reader alone fails, with the reason kept, while the
rest of the burst is sent. Real app, real worker, real SMTP server, SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import time
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter import db
from newsletter.config import Settings, reload_settings
from newsletter.models import Reader
from newsletter.readers import subscriptions
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, offer_topics, post_subscribe

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def client(fresh):
    with db.session_scope() as session:
        offer_topics(session, "Syria")
    return TestClient(create_app())


def readers() -> dict[str, Reader]:
    with db.session_scope() as session:
        return {r.email: r for r in session.scalars(select(Reader))}


def test_the_default_relay_is_taken_to_lack_smtputf8() -> None:
    assert Settings().smtp_utf8 is False


def test_the_form_refuses_a_local_part_no_message_can_carry(client) -> None:
    r = post_subscribe(client, email="Ünal@example.com", topics=["syria"], frequency="weekly",
                       consent="yes")
    assert r.status_code == 422
    assert "letters outside A–Z before the @" in r.text
    assert 'value="Ünal@example.com"' in r.text  # what they typed, kept
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Reader)) == 0


def test_an_international_domain_goes_as_idna(client, fresh) -> None:
    r = post_subscribe(client, email="karim@bücher.example", topics=["syria"],
                       frequency="weekly", consent="yes")
    assert r.status_code == 200
    assert list(readers()) == ["karim@xn--bcher-kva.example"]
    deadline = time.monotonic() + 60
    while not any(r.rcpt_tos == ["karim@xn--bcher-kva.example"] for r in fresh.smtp.received):
        assert time.monotonic() < deadline, "no confirmation to the IDNA address"
        time.sleep(0.05)


def test_an_import_row_with_such_an_address_is_an_error_of_its_own(client, fresh) -> None:
    r = client.post("/api/subscribers", headers=AUTH, json=[
        {"email": "Ünal@example.com", "topics": ["syria"], "frequency": "weekly"},
        {"email": "rana@example.com", "topics": ["syria"], "frequency": "weekly"}])
    assert r.status_code == 200
    body = r.json()
    assert body["created"] == 1 and [e["row"] for e in body["errors"]] == [1]
    assert "SMTPUTF8" in body["errors"][0]["reason"]
    assert list(readers()) == ["rana@example.com"]
    # Rana's confirmation must be out before the next test empties the tables: a task
    # still holding her row (SQLite gives her id to the next test's first reader) would
    # record its failure on that reader.
    deadline = time.monotonic() + 60
    while not any(r.rcpt_tos == ["rana@example.com"] for r in fresh.smtp.received):
        assert time.monotonic() < deadline, "no confirmation to the imported reader"
        time.sleep(0.05)


@pytest.fixture
def smtputf8_web():
    """Sign-ups as a web process with NEWSLETTER_SMTP_UTF8=true took them, while the
    worker's relay (the test's SMTP server, without SMTPUTF8) cannot carry them."""
    os.environ["NEWSLETTER_SMTP_UTF8"] = "true"
    reload_settings()
    yield
    os.environ.pop("NEWSLETTER_SMTP_UTF8")
    reload_settings()


def test_a_confirmation_that_cannot_be_sent_fails_that_reader_alone(
        client, fresh, smtputf8_web) -> None:
    emails = ["ünal@example.com", "amal@example.com", "samir@example.com"]
    with db.session_scope() as session:  # one burst, one send_confirmations task
        for email in emails:
            subscriptions.subscribe(session, email, ["syria"], "weekly", consent_given=True)
    deadline = time.monotonic() + 60
    while {m["To"] for m in fresh.smtp.messages()} < {"amal@example.com", "samir@example.com"}:
        assert time.monotonic() < deadline, "the others' confirmations did not come"
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    while readers()["ünal@example.com"].confirmation_error is None:
        assert time.monotonic() < deadline, "the failure was not recorded"
        time.sleep(0.05)
    bad = readers()["ünal@example.com"]
    # Why, kept on the reader; stamped, so neither a retry nor tomorrow's resend loops.
    assert "needs SMTPUTF8" in bad.confirmation_error
    assert bad.confirmation_sent_at is not None and bad.status == "pending"
    assert readers()["amal@example.com"].confirmation_error is None


def test_such_a_reader_signed_up_before_can_still_be_exported_and_erased(
        client, smtputf8_web) -> None:
    with db.session_scope() as session:
        subscriptions.subscribe(session, "ünal@example.com", ["syria"], "weekly",
                                consent_given=True)
    os.environ["NEWSLETTER_SMTP_UTF8"] = "false"
    reload_settings()
    address = quote("Ünal@example.com")
    export = client.get(f"/api/subscribers/{address}", headers=AUTH)
    assert export.status_code == 200 and "ünal@example.com" in export.text
    assert client.delete(f"/api/subscribers/{address}", headers=AUTH).status_code == 200
    assert "ünal@example.com" not in readers()
