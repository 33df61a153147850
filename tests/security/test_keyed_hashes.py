"""Keyed address hashes (issue 16, item 9): suppressions written as bare SHA-256 before
migration 0012_keyed_hashes keep blocking their address, and become keyed once matched.
Migrated step by step on SQLite and PostgreSQL, then driven through the admin API."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from newsletter import db
from newsletter.config import reload_settings
from newsletter.models import utcnow
from newsletter.readers import consent
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, _fresh_postgres, configure

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GONE = "erased.long.ago@example.com"  # erased before the upgrade: only its hash is left
KNOWN = "still.here@example.com"  # a reader who complained: their address is known


def bare(email: str) -> str:
    """What the code before keyed hashes stored (consent.email_hash as it was)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def rows(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = [tuple(r) for r in conn.execute(text(sql))]
    engine.dispose()
    return found


def write_as_before(url: str) -> None:
    engine = create_engine(url)
    now = utcnow().replace(tzinfo=None) if url.startswith("sqlite") else utcnow()
    with engine.begin() as conn:
        for email, reason in ((GONE, "erased"), (KNOWN, "complaint")):
            conn.execute(text("INSERT INTO suppressions (email_hash, reason, created_at) "
                              "VALUES (:h, :r, :t)"), {"h": bare(email), "r": reason, "t": now})
        reader_id = conn.execute(text(
            "INSERT INTO readers (email, status, frequency, source, created_at) "
            "VALUES (:e, 'unsubscribed', 'weekly', 'form', :t) RETURNING id"),
            {"e": KNOWN, "t": now}).scalar_one()
        conn.execute(text(
            "INSERT INTO consent_events (reader_id, email_hash, action, source, details, "
            "created_at) VALUES (:r, :h, 'withdrawn', 'email', '{}', :t)"),
            {"r": reader_id, "h": bare(KNOWN), "t": now})
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request, tmp_path):
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url, drop = _fresh_postgres()
    db.upgrade(url, "0011")
    write_as_before(url)
    configure(tmp_path, url, "", "smtp://127.0.0.1:9")
    db.upgrade(url)
    try:
        yield url
    finally:
        db.dispose_engines()
        if drop:
            drop()


def import_reader(client: TestClient, email: str) -> dict:
    r = client.post("/api/subscribers", headers=AUTH, json=[{
        "email": email, "topics": ["syria"], "frequency": "weekly",
        "consented_at": (utcnow() - timedelta(days=1)).isoformat()}])
    assert r.status_code == 200, r.text
    return r.json()


def test_suppressions_from_before_the_upgrade_still_block(old_database) -> None:
    url = old_database
    # Where the address is known, the upgrade rewrote its hashes keyed; the rest is marked.
    assert sorted(rows(url, "SELECT email_hash, hash_scheme FROM suppressions")) == sorted([
        (bare(GONE), "sha256"), (consent.email_hash(KNOWN), "hmac-sha256")])
    assert rows(url, "SELECT email_hash FROM consent_events") == [(consent.email_hash(KNOWN),)]

    client = TestClient(create_app())
    assert client.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/1", "title": "Story", "summary": "s",
        "tags": ["Syria"]}).status_code == 201
    client.post("/api/topics", headers=AUTH, json={"name": "Syria"})  # offered to readers
    for email in (GONE, GONE.upper(), KNOWN):
        result = import_reader(client, email)
        assert result["created"] == 0 and result["updated"] == 0, (email, result)
        assert "suppressed" in result["errors"][0]["reason"]
    # Matched by its bare hash once, the erased address's entry is keyed from now on.
    assert sorted(rows(url, "SELECT email_hash, hash_scheme FROM suppressions")) == sorted([
        (consent.email_hash(GONE), "hmac-sha256"), (consent.email_hash(KNOWN), "hmac-sha256")])
    assert consent.email_hash(GONE) != bare(GONE)
    assert import_reader(client, "someone.else@example.com")["created"] == 1

    # The fingerprint is keyed by HASH_KEY, not SECRET_KEY: rotating the signing key
    # (as operators do) must not let a suppressed address through.
    os.environ["NEWSLETTER_SECRET_KEY"] = "a-rotated-secret-key-0123456789abcdef0123"
    try:
        reload_settings()
        result = import_reader(TestClient(create_app()), GONE)
        assert result["created"] == 0 and "suppressed" in result["errors"][0]["reason"]
    finally:
        os.environ["NEWSLETTER_SECRET_KEY"] = SECRET_KEY
        reload_settings()

    # Erasing the reader whose rows were migrated leaves no bare hash of them either.
    assert client.delete(f"/api/subscribers/{KNOWN}", headers=AUTH).status_code == 200
    everything = repr(rows(url, "SELECT * FROM suppressions") + rows(
        url, "SELECT * FROM consent_events") + rows(url, "SELECT * FROM readers"))
    assert bare(KNOWN) not in everything and KNOWN not in everything


def test_downgrade_puts_back_the_hashes_it_can(old_database) -> None:
    command.downgrade(db.alembic_config(old_database), "0011")
    assert sorted(rows(old_database, "SELECT email_hash FROM suppressions")) == sorted([
        (bare(GONE),), (bare(KNOWN),)])
    db.upgrade(old_database)
    assert (consent.email_hash(KNOWN), "hmac-sha256") in rows(
        old_database, "SELECT email_hash, hash_scheme FROM suppressions")
