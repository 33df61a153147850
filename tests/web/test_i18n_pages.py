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
