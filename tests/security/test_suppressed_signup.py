"""Issue 16, item 8: the public form and addresses we must not mail, or must not change.

A hard-bounced, complaining or blocked address gets no confirmation from the form, and the
answer is the same page, byte for byte, as anybody's (no enumeration); an erased reader who
signs up again is a fresh opt-in and is asked to confirm. Signing up again never changes an
unsubscribed reader's topics or frequency until the new choice is confirmed. Through the
real app, a real worker and a real SMTP server, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db, tokens
from newsletter.models import Reader
from newsletter.readers import consent
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, offer_topics, post_subscribe

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def client(fresh):
    with db.session_scope() as session:
        offer_topics(session, *(s.title() for s in ("syria", "jordan", "energy")))
    return TestClient(create_app())


def sign_up(client, email: str, topics=("syria",), frequency: str = "weekly"):
    return post_subscribe(client, email=email, topics=list(topics), frequency=frequency,
                          consent="yes")


def mail_to(backend, email: str, count: int = 1, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in backend.smtp.messages() if m["To"] == email]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no email to {email}")


def reader(email: str) -> dict:
    with db.session_scope() as session:
        r = session.scalar(select(Reader).where(Reader.email == email))
        return {"status": r.status, "frequency": r.frequency,
                "topics": sorted(t.slug for t in r.topics)}


@pytest.mark.parametrize("reason", ["bounce", "complaint", "admin"])
def test_a_suppressed_address_gets_the_same_page_and_no_email(client, fresh, reason) -> None:
    with db.session_scope() as session:
        consent.suppress(session, "gone@example.com", reason)
    refused = sign_up(client, "gone@example.com")
    anybody = sign_up(client, "anybody@example.com")
    assert refused.status_code == anybody.status_code == 200
    assert refused.content == anybody.content  # nothing tells the two apart
    mail_to(fresh, "anybody@example.com")
    time.sleep(1.5)  # the same burst, and more: still nothing for the suppressed one
    assert [m for m in fresh.smtp.messages() if m["To"] == "gone@example.com"] == []


def test_an_erased_reader_who_signs_up_again_is_asked_to_confirm(client, fresh) -> None:
    sign_up(client, "back@example.com")
    mail_to(fresh, "back@example.com")
    assert client.delete("/api/subscribers/back@example.com", headers=AUTH).status_code == 200
    with db.session_scope() as session:
        assert consent.is_suppressed(session, "back@example.com")  # the erasure's mark
    fresh.smtp.clear()
    assert sign_up(client, "back@example.com").status_code == 200
    (confirmation,) = mail_to(fresh, "back@example.com")
    assert "confirm" in confirmation["Subject"].lower()


def confirm_link(message) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(r"https://news\.example(/confirm/[\w.-]+)", text).group(1)


def test_signing_up_again_waits_for_the_confirmation(client, fresh) -> None:
    sign_up(client, "layla@example.com", ["syria", "jordan"], "daily")
    (first,) = mail_to(fresh, "layla@example.com")
    assert client.post(confirm_link(first)).status_code == 200
    mail_to(fresh, "layla@example.com", 2)  # and the welcome
    with db.session_scope() as session:
        layla = session.scalar(select(Reader).where(Reader.email == "layla@example.com"))
        unsubscribe = tokens.make("unsubscribe", layla.id, layla.email)
        # A day on (one confirmation email a day per address, whoever asks).
        layla.confirmation_sent_at -= timedelta(hours=25)
    assert client.post(f"/unsubscribe/{unsubscribe}",
                       data={"List-Unsubscribe": "One-Click"}).status_code == 200
    before = reader("layla@example.com")
    assert before == {"status": "unsubscribed", "frequency": "daily",
                      "topics": ["jordan", "syria"]}

    # Somebody types her address with other choices: hers stay as they were.
    time.sleep(1.1)  # links are signed to the second: the next one must be after the opt-out
    fresh.smtp.clear()
    assert sign_up(client, "layla@example.com", ["energy"], "weekly").status_code == 200
    (second,) = mail_to(fresh, "layla@example.com")
    assert reader("layla@example.com") == {**before, "status": "pending"}
    # The email asks about the new choice; confirming it applies it.
    assert "Energy" in second.get_body(("plain",)).get_content()
    assert client.post(confirm_link(second)).status_code == 200
    assert reader("layla@example.com") == {"status": "active", "frequency": "weekly",
                                            "topics": ["energy"]}
