"""The languages a reader reads: the form's checkboxes (default: the language the form was
shown in), the preference centre, a pending choice, and the import JSON/CSV."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db, tokens
from newsletter.models import ConsentEvent, PendingChoice, Reader
from newsletter.readers import imports, subscriptions
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, form_token, offer_topics

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def topics(fresh) -> None:
    with db.session_scope() as session:
        offer_topics(session, "Syria", "Energy")


def languages_of(email: str) -> str | None:
    with db.session_scope() as session:
        return session.scalar(select(Reader.languages).where(Reader.email == email))


def test_the_form_offers_the_languages_and_ticks_the_one_it_is_shown_in(topics) -> None:
    client = TestClient(create_app())
    arabic = client.get("/subscribe?lang=ar").text
    assert 'name="languages" value="ar"\n    checked' in arabic or \
        'value="ar"\n    checked' in arabic
    assert 'value="en"\n    checked' not in arabic
    english = client.get("/subscribe").text
    assert 'value="en"\n    checked' in english and "العربية" in english


def post_subscribe(client, lang: str = "en", **fields):
    return client.post(f"/subscribe?lang={lang}",
                       data={"form_token": form_token(client), **fields})


def test_sign_ups_store_the_languages_read(topics) -> None:
    client = TestClient(create_app())
    # None ticked: the language the form was shown in.
    r = post_subscribe(client, email="amal@example.com", topics=["syria"], frequency="weekly",
                       consent="yes", lang="ar")
    assert r.status_code == 200, r.text
    assert languages_of("amal@example.com") == "ar"
    # Both ticked on the Arabic form: Arabic first, the reader's own.
    r = post_subscribe(client, email="sami@example.com", topics=["syria"], frequency="weekly",
                       consent="yes", languages=["en", "ar"], lang="ar")
    assert languages_of("sami@example.com") == "ar,en"
    # A language the site does not offer: the form again, with the reason, nothing stored.
    r = post_subscribe(client, email="pierre@example.com", topics=["syria"],
                       frequency="weekly", consent="yes", languages=["fr"])
    assert r.status_code == 422 and "Choose the languages you read" in r.text
    assert languages_of("pierre@example.com") is None


def test_a_known_address_gets_its_new_languages_only_once_confirmed(topics) -> None:
    with db.session_scope() as session:
        subscriptions.subscribe(session, "amal@example.com", ["syria"], "weekly",
                                consent_given=True, languages=["ar"])
        reader = session.scalar(select(Reader).where(Reader.email == "amal@example.com"))
        reader.status = "unsubscribed"
    with db.session_scope() as session:  # someone types the address in again, with English
        subscriptions.subscribe(session, "amal@example.com", ["syria"], "weekly",
                                consent_given=True, languages=["en"])
        reader = session.scalar(select(Reader).where(Reader.email == "amal@example.com"))
        assert reader.languages == "ar"
        assert session.get(PendingChoice, reader.id).languages == "en"
        token = tokens.make("confirm", reader.id, reader.email)
    with db.session_scope() as session:
        assert subscriptions.confirm(session, token).languages == "en"


def test_the_preference_centre_changes_the_languages_and_the_ledger_says_so(topics) -> None:
    with db.session_scope() as session:
        reader_id = subscriptions.subscribe(session, "amal@example.com", ["syria"], "weekly",
                                            consent_given=True, languages=["ar"])
        session.get(Reader, reader_id).status = "active"
        token = tokens.make("preferences", reader_id, "amal@example.com")
    client = TestClient(create_app())
    page = client.get(f"/preferences/{token}")
    form = {"topics": ["syria"], "frequency": "weekly", "csrf": csrf_of_page(page.text),
            "languages_shown": "1"}
    r = client.post(f"/preferences/{token}", data={**form, "languages": ["ar", "en"]})
    assert r.status_code == 200 and languages_of("amal@example.com") == "ar,en"
    r = client.post(f"/preferences/{token}", data=form)  # none ticked: said, nothing changed
    assert r.status_code == 422 and languages_of("amal@example.com") == "ar,en"
    # A form without the languages (an older page) leaves them alone.
    r = client.post(f"/preferences/{token}", data={k: v for k, v in form.items()
                                                   if k != "languages_shown"})
    assert r.status_code == 200 and languages_of("amal@example.com") == "ar,en"
    with db.session_scope() as session:
        changed = session.scalars(select(ConsentEvent.details).where(
            ConsentEvent.action == "changed")).all()
    assert {"languages": ["ar", "ar,en"]} in changed


def csrf_of_page(html: str) -> str:
    import re

    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_imports_take_languages_like_topics(topics) -> None:
    rows = [{"email": "a@example.com", "topics": ["syria"], "languages": "ar;en",
             "consented_at": "2026-11-01"},
            {"email": "b@example.com", "topics": "syria", "languages": ["en"]},
            {"email": "c@example.com", "topics": "syria"},
            {"email": "d@example.com", "topics": "syria", "languages": "fr"},
            {"email": "e@example.com", "topics": "syria", "languages": "not a tag!"}]
    with db.session_scope() as session:
        result = imports.import_readers(session, rows)
    assert (result.created, result.skipped) == (3, 2)
    reasons = dict(result.errors)
    assert "languages must be among this site's (en, ar)" in reasons[4]
    assert "languages must be among" in reasons[5]
    assert languages_of("a@example.com") == "ar,en"
    assert languages_of("b@example.com") == "en"
    assert languages_of("c@example.com") == "en"  # none given: the site's LANGUAGE
    # Again with other languages: an update, recorded in the ledger.
    with db.session_scope() as session:
        again = imports.import_readers(session, [{"email": "b@example.com", "topics": "syria",
                                                  "languages": "ar|en"}])
    assert again.updated == 1 and languages_of("b@example.com") == "ar,en"
    # The CSV form, through the API's JSON twin.
    client = TestClient(create_app())
    r = client.post("/api/subscribers", headers=AUTH, json=[
        {"email": "f@example.com", "topics": ["energy"], "languages": ["ar"],
         "consented_at": "2026-11-01T00:00:00Z"}])
    assert r.status_code == 200 and r.json()["created"] == 1
    assert languages_of("f@example.com") == "ar"
    rows = list(imports.read_csv_rows(["email,topics,languages", "g@example.com,syria,ar;en"]))
    with db.session_scope() as session:
        assert imports.import_readers(session, rows).created == 1
    assert languages_of("g@example.com") == "ar,en"
