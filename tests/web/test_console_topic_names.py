"""A topic's name in other languages, set on the console's topic page: checked, audited, and
what Arabic readers see on the form (and in their emails); empty means the default name."""

from __future__ import annotations

from fastapi.testclient import TestClient

from newsletter import db
from newsletter.newsroom import topics
from newsletter.web.app import create_app
from tests.conftest import add_editor, console_client, csrf_of, sign_in
from tests.web.test_console_topics import state, topic_changes

DESK = "names.desk@news.example"


def _signed_in() -> tuple[TestClient, str]:
    add_editor(DESK, "editor")
    client = console_client(ip="10.9.8.7")
    assert sign_in(client, DESK).status_code == 303
    return client, csrf_of(client)


def _save(client, csrf, **names):
    return client.post("/admin/topics/syria", data={
        "csrf_token": csrf, "description": "", "group": "", "position": "0", "tags": "syria",
        **{f"name_{lang}": value for lang, value in names.items()}})


def test_an_editor_names_a_topic_in_arabic_and_readers_see_it(fresh) -> None:
    with db.session_scope() as session:
        topics.create(session, "Syria")
        session.commit()
    client, csrf = _signed_in()
    page = client.get("/admin/topics/syria").text
    # One field per language the site shows besides its own, written its way.
    assert 'name="name_ar"' in page and 'lang="ar" dir="rtl"' in page
    assert 'name="name_en"' not in page

    assert _save(client, csrf, ar="  سوريا ").status_code == 303
    assert state("syria")["names"] == {"ar": "سوريا"}
    reader = TestClient(create_app())
    assert "<bdi>سوريا</bdi>" in reader.get("/subscribe?lang=ar").text
    assert "<bdi>Syria</bdi>" in reader.get("/subscribe?lang=en").text
    assert topic_changes()[-1][2] == {"change": "edit", "name (ar)": "(none) → سوريا"}

    # Emptied: Arabic readers see the default name again.
    assert _save(client, csrf, ar="").status_code == 303
    assert state("syria")["names"] == {}
    assert "<bdi>Syria</bdi>" in reader.get("/subscribe?lang=ar").text


def test_a_bad_name_is_shown_back_and_changes_nothing(fresh) -> None:
    with db.session_scope() as session:
        topics.create(session, "Syria")
        topics.update(session, "syria", names={"ar": "سوريا"})
        session.commit()
    client, csrf = _signed_in()
    r = _save(client, csrf, ar="x" * 129)
    assert r.status_code == 422
    assert "The name in العربية must be at most 128 characters" in r.text
    assert 'id="names"' in r.text and 'value="' + "x" * 129 + '"' in r.text
    r = _save(client, csrf, ar="سوريا\x07")
    assert r.status_code == 422
    assert state("syria")["names"] == {"ar": "سوريا"}
