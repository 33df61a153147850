"""DKIM: what the SMTP server received verifies with dkimpy against our public key."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time

import dkim
import pytest
from sqlalchemy import select

from newsletter import db, tokens
from newsletter.editions import reports
from newsletter.editions import requests as editions
from newsletter.models import Reader
from newsletter.newsroom import articles
from newsletter.readers import subscriptions
from tests.conftest import offer_topics

SELECTOR = "nl2026"


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory):
    """A fresh RSA key, and the DNS TXT record that would publish it."""
    folder = tmp_path_factory.mktemp("dkim")
    key = folder / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    saved = {k: os.environ.get(k) for k in ("NEWSLETTER_DKIM_KEY_FILE", "NEWSLETTER_DKIM_SELECTOR")}
    # Set before the module's worker starts (the backend fixture comes after this one).
    os.environ.update(NEWSLETTER_DKIM_KEY_FILE=str(key), NEWSLETTER_DKIM_SELECTOR=SELECTOR)
    yield b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def dns_for(record: bytes):
    # The one boundary faked here: DNS. Only our selector's name answers.
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.news.example.".encode() else None
    return lookup


def test_received_messages_carry_a_valid_signature(dkim_key, backend, fresh) -> None:
    with db.session_scope() as session:
        articles.publish(session, {"url": "https://news.example/a/1", "title": "Aid reaches Idlib",
                                   "summary": "Convoys crossed at dawn.", "tags": ["Syria"]})
        offer_topics(session, "Syria")  # what the editors offer readers
    with db.session_scope() as session:
        reader = session.get(Reader, subscriptions.subscribe(
            session, "signed@example.com", ["syria"], "weekly", consent_given=True))
        session.flush()
        token = tokens.make("confirm", reader.id, reader.email)
    fresh.smtp.wait_for(1)
    with db.session_scope() as session:
        subscriptions.confirm(session, token)
    fresh.smtp.wait_for(2)
    with db.session_scope() as session:
        edition_id = editions.request(session, "weekly", source="test").id
    messages = fresh.smtp.wait_for(3)
    assert [m["Subject"].split(":")[0].split()[0] for m in messages] == [
        "Confirm", "Welcome", "Your"]
    for received in fresh.smtp.received:
        assert dkim.verify(received.data, dnsfunc=dns_for(dkim_key)), received.message["Subject"]
        signature = received.message["DKIM-Signature"]
        signed = re.search(r"h=([^;]+)", re.sub(r"\s+", "", signature)).group(1).lower().split(":")
        assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= set(signed)
        assert "d=news.example" in signature and f"s={SELECTOR}" in signature
    # A changed byte breaks it: the check is real.
    tampered = fresh.smtp.received[2].data.replace(b"Aid reaches Idlib", b"Aid reaches Homs!")
    assert not dkim.verify(tampered, dnsfunc=dns_for(dkim_key))
    with db.session_scope() as session:
        assert session.scalar(select(Reader.status)) == "active"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with db.session_scope() as session:
            if reports.report(session, edition_id)["status"] == "done":
                break
        time.sleep(0.1)
