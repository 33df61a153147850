"""A reader's time zone on the way in, on each backend: the form's hidden field (the
one-statement path on PostgreSQL, the ORM's on SQLite), the preference centre and imports.
What a zone does to sending is in tests/editions/test_time_zones.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db, tokens
from newsletter.models import Reader
from newsletter.readers import imports, subscriptions
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, offer_topics

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def topics(fresh, dispatcher) -> None:
    dispatcher.accept()  # no confirmation emails needed here
    with db.session_scope() as session:
        offer_topics(session, "Syria", "Jordan")


def zone_of(email: str) -> str | None:
    with db.session_scope() as session:
        return session.scalar(select(Reader.timezone).where(Reader.email == email))


def form(email: str, zone: str) -> dict:
    return {"email": email, "topics": ["syria"], "frequency": "daily", "consent": "yes",
            "form_token": tokens.make_form_token(), "timezone": zone}


def test_the_form_keeps_a_known_zone_and_falls_back_to_the_sites_silently(topics) -> None:
    client = TestClient(create_app())
    answers = {client.post("/subscribe", data=form(email, zone)).text for email, zone in [
        ("amman@example.com", "Asia/Amman"), ("mars@example.com", "Mars/Olympus_Mons"),
        ("script@example.com", "<script>alert(1)</script>"), ("long@example.com", "A/" * 200),
        ("none@example.com", "")]}
    assert len(answers) == 1 and "Check your inbox" in answers.pop()  # no error for any
    assert zone_of("amman@example.com") == "Asia/Amman"
    for email in ("mars", "script", "long", "none"):
        assert zone_of(f"{email}@example.com") is None, email  # the site's
    # A known address keeps its zone: anybody can type it into the form.
    client.post("/subscribe", data=form("amman@example.com", "America/Los_Angeles"))
    assert zone_of("amman@example.com") == "Asia/Amman"


def test_the_preference_centre_changes_the_zone_and_refuses_an_unknown_one(topics) -> None:
    with db.session_scope() as session:
        reader_id = subscriptions.subscribe(session, "la@example.com", ["syria"], "daily",
                                            consent_given=True, timezone="America/Los_Angeles")
        token = tokens.make("preferences", reader_id, "la@example.com")
        csrf = tokens.make("csrf", reader_id, "la@example.com")
    client = TestClient(create_app())
    page = client.get(f"/preferences/{token}").text
    assert '<option value="America/Los_Angeles" selected>' in page
    base = {"topics": ["syria"], "frequency": "daily", "csrf": csrf}
    bad = client.post(f"/preferences/{token}", data={**base, "timezone": "Mars/Olympus_Mons"})
    assert bad.status_code == 422 and "Choose your time zone from the list." in bad.text
    assert zone_of("la@example.com") == "America/Los_Angeles"  # nothing changed
    ok = client.post(f"/preferences/{token}", data={**base, "timezone": "Asia/Amman"})
    assert ok.status_code == 200 and "Your changes are saved." in ok.text
    assert zone_of("la@example.com") == "Asia/Amman"
    # A form without the field (an older page) leaves the zone as it is.
    client.post(f"/preferences/{token}", data={**base, "frequency": "weekly"})
    assert zone_of("la@example.com") == "Asia/Amman"
    # The reader's data export and the admin API show it.
    export = client.get("/api/subscribers/la@example.com", headers=AUTH).json()
    assert export["reader"]["timezone"] == "Asia/Amman"


def test_an_import_takes_a_zone_and_skips_a_line_with_an_unknown_one(topics) -> None:
    client = TestClient(create_app())
    r = client.post("/api/subscribers", headers=AUTH, json=[
        {"email": "amman@example.com", "topics": ["syria"], "frequency": "daily",
         "timezone": "Asia/Amman", "consented_at": "2025-01-02"},
        {"email": "typo@example.com", "topics": ["syria"], "timezone": "Asia/Aman"},
        {"email": "none@example.com", "topics": ["syria"]},
    ])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["created"], body["skipped"]) == (2, 1)
    assert "timezone must be an IANA name" in body["errors"][0]["reason"]
    assert (zone_of("amman@example.com"), zone_of("typo@example.com"),
            zone_of("none@example.com")) == ("Asia/Amman", None, None)
    # Again, from a CSV export: a new zone updates the reader; no zone keeps theirs.
    lines = ["email,topics,frequency,timezone", "amman@example.com,syria,daily,Europe/London",
             "none@example.com,syria,weekly,"]
    with db.session_scope() as session:
        result = imports.import_readers(session, imports.read_csv_rows(lines), first_row=2)
    assert (result.updated, result.unchanged, result.skipped) == (1, 1, 0)
    assert (zone_of("amman@example.com"), zone_of("none@example.com")) == ("Europe/London",
                                                                            None)
