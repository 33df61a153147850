"""Erasure erases (issue 16, item 9): after a reader is erased, from the admin API or their
own emailed link, no table holds their address or its bare SHA-256, only a keyed
fingerprint that still blocks the address. On each backend, with a real worker and SMTP."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db
from newsletter.models import Base, BounceEvent, Delivery, OutboxEvent, Reader, Suppression, utcnow
from newsletter.readers import consent
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, wait_idle
from tests.security.test_reader_links import csrf_of, emailed_data_link, join

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DSN = Path(__file__).parent.parent / "data" / "dsn-hard-user-unknown.eml"


@pytest.fixture
def client(fresh) -> TestClient:
    c = TestClient(create_app(), headers={"User-Agent": "Mozilla/5.0 (test reader)"})
    r = c.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/seed", "title": "Seed", "summary": "news",
        "tags": ["Syria"], "published_at": (utcnow() - timedelta(hours=1)).isoformat()})
    assert r.status_code == 201, r.text
    assert c.post("/api/topics", headers=AUTH, json={"name": "Syria"}).status_code == 201
    return c


def traces_of(email: str) -> list[str]:
    """Every row of every table whose text holds the address or its bare SHA-256."""
    marks = (email.lower(), hashlib.sha256(email.lower().encode()).hexdigest())
    found = []
    with db.session_scope() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(table.select()):
                text = repr(tuple(row)).lower()
                found += [f"{table.name}: {row}" for mark in marks if mark in text]
    return found


def import_reader(client: TestClient, email: str) -> dict:
    r = client.post("/api/subscribers", headers=AUTH, json=[{
        "email": email, "topics": ["syria"], "frequency": "weekly",
        "consented_at": (utcnow() - timedelta(days=3)).isoformat(), "source": "crm"}])
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(check, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_erasure_through_the_admin_api_leaves_no_trace(client, fresh) -> None:
    # The sink refuses "bounce-" addresses at RCPT, quoting the address in its 550 reply.
    email = "bounce-erase.me@example.com"
    assert import_reader(client, email)["created"] == 1
    import_reader(client, "stays@example.com")
    edition = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly"}).json()

    def failed() -> bool:
        with db.session_scope() as session:
            return session.scalar(select(Delivery.last_error).where(
                Delivery.edition_id == edition["id"], Delivery.status == "failed")) is not None
    wait_for(failed)
    # A relay's bounce report naming the address, and an editor's test send to it.
    raw = DSN.read_bytes().replace(b"nobody.here@example.org", email.encode())
    assert client.post("/api/bounces", content=raw,
                       headers={**AUTH, "Content-Type": "message/rfc822"}).status_code == 200
    assert client.post("/api/editions/test-send", headers=AUTH,
                       json={"to": email.upper(), "tags": ["syria"]}).status_code == 202
    wait_idle()
    with db.session_scope() as session:  # the places the address really reached
        errors = session.scalars(select(Delivery.last_error)).all()
        assert any(email in (e or "") for e in errors)
        assert any(email in str(p).lower() for p in session.scalars(select(OutboxEvent.payload)))
        assert session.scalars(select(BounceEvent)).all()
    assert traces_of(email)

    assert client.delete(f"/api/subscribers/{email}", headers=AUTH).json() == {"status": "erased"}
    assert traces_of(email) == []
    assert traces_of("stays@example.com")  # the scan does see an address that is there
    with db.session_scope() as session:
        (suppression,) = session.scalars(select(Suppression)).all()
        assert suppression.email_hash == consent.email_hash(email)
        assert suppression.hash_scheme == "hmac-sha256"
        assert suppression.reason in ("bounce", "erased")
    # The keyed fingerprint still blocks the address.
    result = import_reader(client, email)
    assert result["created"] == 0 and "suppressed" in result["errors"][0]["reason"]


def test_erasure_from_the_readers_link_leaves_no_trace(client, fresh) -> None:
    email = "self.erase@example.com"
    links = join(client, fresh.smtp, email)
    assert client.post("/api/editions/test-send", headers=AUTH,
                       json={"to": email, "tags": ["syria"]}).status_code == 202
    fresh.smtp.wait_for(1)
    fresh.smtp.clear()
    page = client.get(links["preferences"]).text
    assert client.post(links["preferences"] + "/data-link",
                       data={"csrf": csrf_of(page)}).status_code == 200
    mine = emailed_data_link(fresh.smtp, email)
    assert traces_of(email)

    r = client.post(mine + "/erase", data={"confirm": "yes", "csrf": csrf_of(client.get(mine).text)})
    assert r.status_code == 200
    assert traces_of(email) == []
    with db.session_scope() as session:
        assert session.scalar(select(Reader).where(Reader.email == email)) is None
        hashes = session.scalars(select(Suppression.email_hash)).all()
        assert hashes == [consent.email_hash(email)]
        assert hashes != [hashlib.sha256(email.encode()).hexdigest()]
    result = import_reader(client, email)
    assert result["created"] == 0 and "suppressed" in result["errors"][0]["reason"]
