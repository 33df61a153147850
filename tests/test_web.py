"""The web app on SQLite: reader pages and the admin API, without a worker."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter import db, tokens
from newsletter.models import Article, ConsentEvent, OutboxEvent, Reader
from newsletter.readers import subscriptions
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, configure

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    var = tmp_path_factory.mktemp("web")
    # No worker consumes this broker: events are recorded and published, nothing is sent.
    configure(var, f"sqlite:///{var / 'web.db'}", "", "smtp://127.0.0.1:9")
    db.upgrade()
    c = TestClient(create_app())
    r = c.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/1", "title": "Aid reaches Idlib", "summary": "s",
        "tags": ["Syria", "Russia"]})
    assert r.status_code == 201
    for name in ("Syria", "Russia"):  # what the editors offer readers
        assert c.post("/api/topics", headers=AUTH, json={"name": name}).status_code == 201
    return c


def count(model) -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model))


def form(email: str, **over) -> dict:
    return {"email": email, "topics": ["syria"], "frequency": "weekly", "consent": "yes",
            "form_token": tokens.make_form_token()} | over


def test_subscribe_answers_identically_for_every_address_state(client) -> None:
    new = client.post("/subscribe", data=form("new@example.com"))
    pending = client.post("/subscribe", data=form("new@example.com"))
    with db.session_scope() as session:
        r = session.get(Reader, subscriptions.subscribe(
            session, "active@example.com", ["syria"], "daily", consent_given=True))
        r.status = "active"
        r2 = session.get(Reader, subscriptions.subscribe(
            session, "gone@example.com", ["syria"], "daily", consent_given=True))
        r2.status = "unsubscribed"
    active = client.post("/subscribe", data=form("active@example.com"))
    gone = client.post("/subscribe", data=form("gone@example.com"))
    answers = {(r.status_code, r.text) for r in (new, pending, active, gone)}
    assert len(answers) == 1 and new.status_code == 200
    with db.session_scope() as session:
        statuses = dict(session.execute(select(Reader.email, Reader.status)).all())
    # Nothing is active until confirmed; the active reader was left alone.
    assert statuses == {"new@example.com": "pending", "active@example.com": "active",
                        "gone@example.com": "pending"}


@pytest.mark.parametrize("bad, field, message", [
    ({"email": "not-an-address"}, "email", "valid email"),
    ({"topics": []}, "topics", "at least one topic"),
    ({"topics": ["atlantis"]}, "topics", "Unknown topic"),
    ({"frequency": "hourly"}, "frequency", "immediate, daily or weekly"),
    ({"consent": ""}, "consent", "tick the box"),
])
def test_bad_input_is_explained_keeps_what_was_typed_and_changes_nothing(client, bad, field,
                                                                         message) -> None:
    before = (count(Reader), count(ConsentEvent), count(OutboxEvent))
    r = client.post("/subscribe", data=form("typed@example.com") | bad)
    assert r.status_code == 422
    assert message in r.text
    if field != "email":
        assert 'value="typed@example.com"' in r.text
    assert (count(Reader), count(ConsentEvent), count(OutboxEvent)) == before


def test_an_overlong_field_is_explained_and_changes_nothing(client) -> None:
    before = (count(Reader), count(ConsentEvent), count(OutboxEvent))
    for over in ({"email": "a" * 320 + "@example.com"}, {"topics": ["syria", "x" * 101]},
                 {"form_token": "t" * 201}, {"topics": ["syria"] * 1001}):
        r = client.post("/subscribe", data=form("long@example.com") | over)
        assert r.status_code == 422 and "longer than it can be" in r.text, over
    assert (count(Reader), count(ConsentEvent), count(OutboxEvent)) == before


def test_the_form_posted_as_multipart_is_read_the_same(client) -> None:
    fields = form("multipart@example.com", topics=["syria", "russia"])
    files = {"_": ("", b"")}  # forces multipart/form-data, as a page with a file input would
    r = client.post("/subscribe", data=fields, files=files)
    assert r.status_code == 200 and "Check your inbox" in r.text
    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == "multipart@example.com"))
        assert sorted(t.slug for t in reader.topics) == ["russia", "syria"]
        assert reader.frequency == "weekly"


def test_honeypot_gets_the_same_answer_and_stores_nothing(client) -> None:
    before = count(Reader)
    r = client.post("/subscribe", data=form("bot@example.com", website="http://spam"))
    assert r.status_code == 200 and "Check your inbox" in r.text
    assert count(Reader) == before


def test_form_lists_topics_with_consent_text(client) -> None:
    r = client.get("/subscribe")
    assert r.status_code == 200
    assert 'value="syria"' in r.text and 'value="russia"' in r.text
    assert "unsubscribe at any time" in r.text and 'name="website"' in r.text


def reader_and_tokens(email: str) -> tuple[int, dict[str, str]]:
    with db.session_scope() as session:
        r = session.get(Reader, subscriptions.subscribe(
            session, email, ["syria"], "weekly", consent_given=True))
        session.flush()
        return r.id, {p: tokens.make(p, r.id, r.email) for p in tokens.PURPOSES}


def status_of(reader_id: int) -> str:
    with db.session_scope() as session:
        return session.get(Reader, reader_id).status


def test_get_never_changes_state(client) -> None:
    rid, t = reader_and_tokens("get@example.com")
    assert client.get(f"/confirm/{t['confirm']}").status_code == 200
    assert status_of(rid) == "pending"
    assert client.post(f"/confirm/{t['confirm']}").status_code == 200
    assert status_of(rid) == "active"
    assert client.get(f"/unsubscribe/{t['unsubscribe']}").status_code == 200
    assert status_of(rid) == "active"


def test_tampered_and_wrong_purpose_tokens_change_nothing(client) -> None:
    rid, t = reader_and_tokens("tamper@example.com")
    tampered = t["confirm"][:-2] + ("AA" if not t["confirm"].endswith("AA") else "BB")
    for url in (f"/confirm/{tampered}", f"/confirm/{t['unsubscribe']}",
                f"/unsubscribe/{t['confirm']}", "/unsubscribe/garbage"):
        r = client.post(url, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 400 and "not valid" in r.text, url
    assert status_of(rid) == "pending"


def test_confirm_link_from_before_an_unsubscribe_does_not_resubscribe(client) -> None:
    rid, t = reader_and_tokens("changed-mind@example.com")
    assert client.post(f"/confirm/{t['confirm']}").status_code == 200
    assert client.post(f"/unsubscribe/{t['unsubscribe']}",
                       data={"reason": "too many emails"}).status_code == 200
    assert status_of(rid) == "unsubscribed"
    assert client.post(f"/confirm/{t['confirm']}").status_code == 400
    assert status_of(rid) == "unsubscribed"
    with db.session_scope() as session:
        withdrawn = session.scalars(select(ConsentEvent).where(
            ConsentEvent.reader_id == rid, ConsentEvent.action == "withdrawn")).one()
        assert withdrawn.method == "link" and withdrawn.details == {"reason": "too many emails"}


def test_one_click_unsubscribe_both_encodings_no_redirect_idempotent(client) -> None:
    rid, t = reader_and_tokens("oneclick@example.com")
    client.post(f"/confirm/{t['confirm']}")
    url = f"/unsubscribe/{t['unsubscribe']}"
    r = client.post(url, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert r.status_code == 200 and status_of(rid) == "unsubscribed"
    r = client.post(url, files={"List-Unsubscribe": (None, "One-Click")}, follow_redirects=False)
    assert r.status_code == 200
    with db.session_scope() as session:
        events = session.scalars(select(ConsentEvent).where(
            ConsentEvent.reader_id == rid, ConsentEvent.action == "withdrawn")).all()
    assert [e.method for e in events] == ["one-click"]


def test_admin_api_needs_the_bearer_token(client) -> None:
    body = {"url": "https://news.example/a/x", "title": "t", "tags": ["Syria"]}
    assert client.post("/api/articles", json=body).status_code == 401
    assert client.post("/api/articles", json=body,
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/editions/1").status_code == 401
    assert count(Article) == 1


def test_same_url_updates_the_article_never_duplicates(client) -> None:
    body = {"url": "https://news.example/a/2", "title": "First take", "summary": "s",
            "tags": ["Jordan"]}
    first = client.post("/api/articles", json=body, headers=AUTH)
    again = client.post("/api/articles", json={**body, "title": "Corrected take"}, headers=AUTH)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and again.json()["title"] == "Corrected take"
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Article).where(
            Article.url == body["url"])) == 1


@pytest.mark.parametrize("body", [
    {"url": "ftp://x/y", "title": "t", "tags": ["a"]},
    {"url": "https://news.example/a/3", "title": "", "tags": ["a"]},
    {"url": "https://news.example/a/3", "title": "t", "tags": []},
    {"url": "https://news.example/a/3", "title": "t", "tags": ["a"],
     "published_at": "2026-11-28T09:00:00"},
])
def test_bad_articles_are_refused_and_change_nothing(client, body) -> None:
    before = count(Article)
    r = client.post("/api/articles", json=body, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"]
    assert count(Article) == before


def test_editions_api(client) -> None:
    assert client.post("/api/editions", json={"frequency": "hourly"},
                       headers=AUTH).status_code == 422
    r = client.post("/api/editions", json={"frequency": "daily", "tags": ["nowhere"]},
                    headers=AUTH)
    assert r.status_code == 422 and "unknown tag" in r.json()["detail"]
    r = client.post("/api/editions", json={"frequency": "daily", "tags": ["Syria"]}, headers=AUTH)
    assert r.status_code == 202 and r.json()["status"] == "planning"
    report = client.get(f"/api/editions/{r.json()['id']}", headers=AUTH).json()
    assert report["tags"] == ["syria"] and set(report["counts"]) >= {
        "planned", "sent", "failed", "skipped", "unsubscribed"}
    assert client.get("/api/editions/99999", headers=AUTH).status_code == 404


def test_health_and_openapi(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    assert client.get("/openapi.json").status_code == 401  # the admin token opens it
    paths = client.get("/openapi.json", headers=AUTH).json()["paths"]
    assert {"/subscribe", "/api/articles", "/api/editions", "/api/editions/{edition_id}"} <= set(paths)


def test_subject_header_cannot_carry_a_newline(client) -> None:
    r = client.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/crlf", "title": "Hi\r\nBcc: victim@example.com",
        "tags": ["Syria"]})
    assert r.status_code == 201
    assert not re.search(r"[\r\n]", r.json()["title"])
