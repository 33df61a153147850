"""Reader pages in the reader's language: ?lang=, then Accept-Language, then LANGUAGE."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db, tokens
from newsletter.models import Reader, Topic
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, configure

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    var = tmp_path_factory.mktemp("web_i18n")
    configure(var, f"sqlite:///{var / 'web.db'}", "", "smtp://127.0.0.1:9")
    db.upgrade()
    c = TestClient(create_app())
    for name in ("Syria", "Russia"):
        assert c.post("/api/topics", headers=AUTH, json={"name": name}).status_code == 201
    with db.session_scope() as session:
        syria = session.scalar(select(Topic).where(Topic.slug == "syria"))
        syria.names = {"ar": "سوريا"}
        session.commit()
    return c


def _html_tag(page: str) -> str:
    return re.search(r"<html[^>]*>", page).group(0)


def test_the_form_is_arabic_and_right_to_left_with_lang_ar(client) -> None:
    page = client.get("/subscribe?lang=ar").text
    assert _html_tag(page) == '<html lang="ar" dir="rtl">'
    assert "القصص التي تتابعها، في بريدك الوارد" in page
    assert "<bdi>سوريا</bdi>" in page  # the topic's Arabic name, isolated
    assert "<bdi>Russia</bdi>" in page  # no Arabic name yet: the default one
    assert 'action="/subscribe?lang=ar"' in page
    assert "أوافق على تلقي النشرات" in page  # the consent text, translated


@pytest.mark.parametrize(("header", "lang"), [
    ("ar-JO,ar;q=0.9,en;q=0.8", "ar"), ("fr, ar;q=0.5", "ar"), ("en-GB", "en"), ("de", "en")])
def test_accept_language_chooses_when_no_lang_is_given(client, header, lang) -> None:
    r = client.get("/subscribe", headers={"Accept-Language": header})
    assert _html_tag(r.text) == f'<html lang="{lang}" dir="{"rtl" if lang == "ar" else "ltr"}">'
    assert "Accept-Language" in r.headers["vary"]


def test_lang_wins_over_the_browser_and_unknown_lang_is_ignored(client) -> None:
    assert 'lang="en"' in _html_tag(client.get("/subscribe?lang=en",
                                               headers={"Accept-Language": "ar"}).text)
    r = client.get("/subscribe?lang=<script>", headers={"Accept-Language": "ar"})
    assert r.status_code == 200 and 'lang="ar"' in _html_tag(r.text)
    assert "<script>" not in r.text


def test_the_language_switcher_links_this_page_in_each_language(client) -> None:
    page = client.get("/subscribe?lang=ar").text
    assert 'href="/subscribe?lang=en" lang="en" hreflang="en">English</a>' in page
    assert 'aria-current="true">العربية</a>' in page


def test_an_arabic_sign_up_is_answered_in_arabic_and_remembered(client) -> None:
    r = client.post("/subscribe?lang=ar", data={
        "email": "reader@example.com", "topics": ["syria"], "frequency": "weekly",
        "consent": "yes", "form_token": tokens.make_form_token()})
    assert r.status_code == 200
    assert "تفقّد بريدك الوارد" in r.text and 'dir="rtl"' in r.text
    with db.session_scope() as session:
        assert session.scalar(select(Reader.locale).where(
            Reader.email == "reader@example.com")) == "ar"


def _reader(email: str, locale: str | None) -> Reader:
    from newsletter.readers import subscriptions

    with db.session_scope() as session:
        reader_id = subscriptions.subscribe(session, email, ["syria"], "weekly",
                                            consent_given=True, locale=locale)
        reader = session.get(Reader, reader_id)
        reader.status = "active"
        session.commit()
        session.expunge(reader)
        return reader


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_a_readers_pages_are_in_their_language_whatever_the_browser(client) -> None:
    reader = _reader("arabic.reader@example.com", "ar")
    prefs = tokens.make("preferences", reader.id, reader.email)
    page = client.get(f"/preferences/{prefs}", headers={"Accept-Language": "en"}).text
    assert 'lang="ar" dir="rtl"' in _html_tag(page) and "احفظ التفضيلات" in page
    assert "تفضيلات <bdi>arabic.reader@example.com</bdi>" in page
    assert "لمدة ساعة" in page  # the data link's lifetime, in words of the language
    unsub = tokens.make("unsubscribe", reader.id, reader.email)
    page = client.get(f"/unsubscribe/{unsub}").text
    assert "رسائل كثيرة جدًا" in page and 'value="Too many emails"' in page  # stored in English
    # ?lang= still wins (the switcher), and the forms keep it.
    page = client.get(f"/preferences/{prefs}?lang=en").text
    assert 'lang="en"' in _html_tag(page) and f'action="/preferences/{prefs}?lang=en"' in page


def test_the_reader_changes_their_language_in_the_preference_centre(client) -> None:
    reader = _reader("switcher@example.com", None)  # from before languages: the site's
    prefs = tokens.make("preferences", reader.id, reader.email)
    page = client.get(f"/preferences/{prefs}").text
    assert 'lang="en"' in _html_tag(page)
    assert 'name="locale" value="en" checked' in page
    r = client.post(f"/preferences/{prefs}?lang=en", data={
        "csrf": _csrf(page), "topics": ["syria"], "frequency": "weekly", "locale": "ar"})
    assert r.status_code == 200
    assert 'lang="ar" dir="rtl"' in _html_tag(r.text) and "حُفظت تغييراتك." in r.text
    with db.session_scope() as session:
        assert session.get(Reader, reader.id).locale == "ar"
    # A language the site does not show is no choice: nothing changes.
    client.post(f"/preferences/{prefs}", data={
        "csrf": _csrf(r.text), "topics": ["syria"], "frequency": "weekly", "locale": "fr"})
    with db.session_scope() as session:
        assert session.get(Reader, reader.id).locale == "ar"


def test_errors_from_python_are_shown_in_the_readers_language(client) -> None:
    r = client.post("/subscribe?lang=ar", data={
        "email": "not-an-address", "topics": ["nowhere"], "frequency": "hourly",
        "form_token": tokens.make_form_token()})
    assert r.status_code == 422
    assert "يُرجى إدخال عنوان بريد إلكتروني صحيح." in r.text
    assert "موضوع غير معروف: nowhere." in r.text
    assert "اختر: فور النشر، أو يوميًا، أو أسبوعيًا." in r.text
    assert "يُرجى تحديد المربع للموافقة على تلقي النشرة." in r.text
    # The API keeps its English messages.
    bad = client.get("/confirm/not-a-token?lang=ar")
    assert bad.status_code == 400 and "هذا الرابط غير صالح" in bad.text
    assert "لم يتغيّر شيء." in bad.text


def test_a_missing_edition_is_explained_in_the_readers_language(client) -> None:
    r = client.get("/editions/999999?lang=ar")
    assert r.status_code == 404 and "العدد غير موجود" in r.text
