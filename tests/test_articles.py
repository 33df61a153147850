"""Article lifecycle: updates keep a history, unpublishing reaches unsent deliveries, and a
corrected article is flagged once in its readers' next digest (real worker, real SMTP)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import lxml.html
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from newsletter import db, events, tokens
from newsletter.cli import app as cli
from newsletter.editions import planning
from newsletter.editions import requests as editions
from newsletter.editions.selection import Candidates, ReaderRow, Revised, decide
from newsletter.models import (
    Article,
    ArticleRevision,
    Delivery,
    EditionDigest,
    Reader,
    utcnow,
)
from newsletter.newsroom import articles
from newsletter.readers import subscriptions
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log, topics_for
from tests.test_pipeline import html_part, text_part, url_of, wait_edition

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TOPICS = ["Syria", "Energy", "Diplomacy"]


# ---------------------------------------------------------------- helpers

def seed_topics(client: TestClient) -> None:
    """Readers can only follow tags the newsroom has published on."""
    r = client.post("/api/articles", headers=AUTH, json={
        "url": url_of("Seed"), "title": "Seed", "summary": "old news", "tags": TOPICS,
        "published_at": (utcnow() - timedelta(days=30)).isoformat()})
    assert r.status_code == 201, r.text


def add_readers(readers: dict[str, list[str]]) -> dict[str, int]:
    """Subscribe and confirm through the domain; their notices are not the subject here."""
    events.set_dispatcher(lambda *_: True)  # confirmation and welcome emails: not sent
    try:
        ids = {}
        for email, topics in readers.items():
            with db.session_scope() as session:
                topics_for(session, topics)
                ids[email] = subscriptions.subscribe(session, email, topics, "weekly",
                                                     consent_given=True, source="api")
            with db.session_scope() as session:
                subscriptions.confirm(session, tokens.make("confirm", ids[email], email))
        return ids
    finally:
        events.set_dispatcher(None)


def post(client: TestClient, title: str, tags: list[str], *, url: str | None = None,
         status: int = 201, **extra) -> dict:
    r = client.post("/api/articles", headers=AUTH, json={
        "url": url or url_of(title), "title": title, "tags": tags,
        "summary": extra.pop("summary", f"Summary of {title}."), **extra})
    assert r.status_code == status, r.text
    return r.json()


def send_edition(client: TestClient, backend) -> dict:
    r = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly"})
    assert r.status_code == 202, r.text
    report = wait_edition(client, r.json()["id"])
    assert report["status"] == "done", (report, dump_log(backend))
    return report


def by_recipient(messages) -> dict:
    return {str(m["To"]): m for m in messages}


# ---------------------------------------------------------------- substantial

@pytest.mark.parametrize(("changes", "expected"), [
    ({"title": ["Quake in Aleppo: 3 dead", "Quake in Aleppo: 30 dead"]}, True),
    ({"title": ["Talks resume in Geneva", "Talks collapse in Geneva"]}, True),
    ({"title": ["talks resume in geneva", "Talks resume in Geneva!"]}, False),  # case, punct.
    ({"title": ["استئناف المحادثات", "انهيار المحادثات"]}, True),
    ({"summary": ["Rescuers searched the rubble overnight in the old city.",
                  "Rescuers searched the rubble overnight in the old city!"]}, False),
    ({"summary": ["Three people died when the building fell.",
                  "The army denied any role; witnesses said a drone struck first."]}, True),
    ({"summary": ["The strike killed 3 people near the market.",
                  "The strike killed 30 people near the market."]}, True),  # numbers matter
    ({"tags": [["Syria"], ["Syria", "Diplomacy"]]}, False),
    ({"image_url": [None, "https://cdn.example/a.jpg"]}, False),
    ({"url": ["https://news.example/a", "https://news.example/a-2"]}, False),
    ({"author": ["Desk", "Lina Haddad"]}, False),
    ({"published_at": ["2026-11-27T08:00:00+00:00", "2026-11-27T09:00:00+00:00"]}, False),
    ({"status": ["published", "unpublished"]}, False),
])
def test_what_counts_as_a_substantial_change(changes: dict, expected: bool) -> None:
    assert articles.is_substantial(changes) is expected


# ---------------------------------------------------------------- revisions

def test_updates_keep_a_history_of_what_changed(fresh) -> None:
    base = {"url": "https://news.example/a/quake", "title": "Quake in Aleppo: 3 dead",
            "summary": "Rescuers searched the rubble.", "tags": ["Syria"],
            "published_at": "2026-11-27T08:00:00Z"}
    with db.session_scope() as session:
        first = articles.upsert(session, base)
        assert first.outcome == "created"
    article_id, stamp = first.article.id, first.article.updated_at

    with db.session_scope() as session:
        same = articles.upsert(session, dict(base, title=" Quake in  Aleppo: 3 dead"))
        assert (same.outcome, same.revision) == ("unchanged", None)
    with db.session_scope() as session:
        assert session.get(Article, article_id).updated_at == stamp  # untouched
        assert session.scalars(select(ArticleRevision)).all() == []

    with db.session_scope() as session:
        fixed = articles.upsert(session, dict(base, title="Quake in Aleppo: 30 dead",
                                              tags=["Syria", "Disasters"]))
        assert fixed.outcome == "updated"
    with db.session_scope() as session:
        tagged = articles.upsert(session, dict(base, title="Quake in Aleppo: 30 dead",
                                               tags=["Disasters", "Syria"],
                                               published_at="2026-11-27T10:00:00+02:00"))
        assert tagged.outcome == "updated"
    with db.session_scope() as session:
        revisions = session.scalars(select(ArticleRevision).order_by(ArticleRevision.id)).all()
        assert [r.changes for r in revisions] == [
            {"title": ["Quake in Aleppo: 3 dead", "Quake in Aleppo: 30 dead"],
             "tags": [["Syria"], ["Syria", "Disasters"]]},
            {"tags": [["Syria", "Disasters"], ["Disasters", "Syria"]]},  # 08:00Z == 10:00+02
        ]
        assert [r.substantial for r in revisions] == [True, False]
        article = session.get(Article, article_id)
        assert article.updated_at == revisions[-1].changed_at > stamp
        assert [t.name for t in article.tags] == ["Disasters", "Syria"]


def test_external_id_identifies_an_article_across_url_changes(fresh) -> None:
    item = {"url": "https://news.example/a/1", "title": "One", "tags": ["Syria"],
            "external_id": "cms:1"}
    with db.session_scope() as session:
        article_id = articles.upsert(session, item).article.id
        articles.upsert(session, {"url": "https://news.example/a/2", "title": "Two",
                                  "tags": ["Syria"]})
    with db.session_scope() as session:
        moved = articles.upsert(session, dict(item, url="https://news.example/a/1-fixed"))
        assert (moved.article.id, moved.outcome) == (article_id, "updated")
        assert moved.revision.changes == {"url": ["https://news.example/a/1",
                                                  "https://news.example/a/1-fixed"]}
    with db.session_scope() as session, pytest.raises(articles.ArticleError,
                                                      match="url: already belongs to article"):
        articles.upsert(session, dict(item, url="https://news.example/a/2"))


def test_api_and_cli_report_unchanged_updates(fresh) -> None:
    client = TestClient(create_app())
    first = post(client, "Aid reaches Idlib", ["Syria"])
    again = post(client, "Aid reaches Idlib", ["Syria"], status=200)
    assert again["updated_at"] == first["updated_at"]
    url = url_of("Aid reaches Idlib")
    result = CliRunner().invoke(cli, ["publish", "-"], input=json.dumps([
        {"url": url, "title": "Aid reaches Idlib", "summary": "Summary of Aid reaches Idlib.",
         "tags": ["Syria"]},
        {"url": url, "title": "Aid reaches Idlib at last", "tags": ["Syria"]}]))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"unchanged {first['id']}: Aid reaches Idlib",
                                          f"updated {first['id']}: Aid reaches Idlib at last"]


# ---------------------------------------------------------------- unpublish

def test_unpublished_article_disappears_from_pending_deliveries(fresh) -> None:
    backend = fresh
    client = TestClient(create_app())
    seed_topics(client)
    ids = add_readers({"x@example.com": ["syria", "energy"], "y@example.com": ["syria"],
                       "z@example.com": ["energy"], "w@example.com": ["syria"],
                       "v@example.com": ["syria"]})
    strike = post(client, "Strike on Homs market", ["Syria"])
    post(client, "Gas field deal signed", ["Energy"])
    post(client, "Brent at $82", ["Energy"])

    # Plan here and keep the worker out until the unpublish is done.
    events.set_dispatcher(lambda *_: False)
    try:
        with db.session_scope() as session:
            edition_id = editions.request(session, "weekly", source="test").id
        with db.session_scope() as session:
            planning.plan(session, edition_id)
    finally:
        events.set_dispatcher(None)
    with db.session_scope() as session:
        # w's message is on the wire right now; v's first attempt failed and waits to retry.
        session.execute(update(Delivery).where(Delivery.reader_id == ids["w@example.com"])
                        .values(status="sending"))
        session.execute(update(Delivery).where(Delivery.reader_id == ids["v@example.com"])
                        .values(status="retry", next_attempt_at=utcnow() + timedelta(hours=1)))
        x_before = session.scalar(select(Delivery.content_key).where(
            Delivery.reader_id == ids["x@example.com"]))

    r = client.delete(f"/api/articles/{strike['id']}", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "unpublished"
    assert (r.json()["deliveries_changed"], r.json()["deliveries_suppressed"]) == (3, 2)

    def state(email: str) -> tuple[str, str | None, str, list[tuple[str, int]]]:
        with db.session_scope() as session:
            d = session.scalar(select(Delivery).where(Delivery.reader_id == ids[email]))
            items = session.get(EditionDigest, (d.edition_id, d.content_key)).items
            titles = dict(session.execute(select(Article.id, Article.title)).tuples().all())
            rows = [(titles[item[1]], position) for position, item in enumerate(items)]
            return d.status, d.last_error, d.content_key, rows

    x, z = state("x@example.com"), state("z@example.com")
    assert x[0] == "queued" and x[3] == [("Brent at $82", 0), ("Gas field deal signed", 1)]
    # What remains is exactly z's digest: the same content key, so it renders once.
    assert x[2] == z[2] != x_before
    for email in ("y@example.com", "v@example.com"):
        assert state(email)[:2] == ("suppressed", "empty after unpublish"), email
        assert state(email)[3] == []
    assert state("w@example.com")[0] == "sending"  # mid-SMTP: left alone
    assert [t for t, _ in state("w@example.com")[3]] == ["Strike on Homs market"]

    again = client.delete(f"/api/articles/{strike['id']}", headers=AUTH).json()
    assert (again["deliveries_changed"], again["deliveries_suppressed"]) == (0, 0)
    assert client.delete("/api/articles/999999", headers=AUTH).status_code == 404

    # Now let the worker send what was queued: x and z only, and x without the strike.
    with db.session_scope() as session:
        events.dispatch_pending(session, older_than=timedelta(0))
    sent = by_recipient(backend.smtp.wait_for(2))
    time.sleep(0.5)
    assert sorted(str(m["To"]) for m in backend.smtp.messages()) == [
        "x@example.com", "z@example.com"]
    assert "Strike on Homs" not in text_part(sent["x@example.com"])
    assert "Strike on Homs" not in html_part(sent["x@example.com"])
    assert "Brent at $82" in text_part(sent["x@example.com"])
    backend.smtp.clear()

    # A later edition never offers it, even to a reader who never had a digest.
    add_readers({"u@example.com": ["syria"]})
    post(client, "Homs market reopens", ["Syria"])
    send_edition(client, backend)
    later = by_recipient(backend.smtp.wait_for(5))
    assert set(later) == {"x@example.com", "y@example.com", "v@example.com", "w@example.com",
                          "u@example.com"}
    for message in later.values():
        assert "Homs market reopens" in text_part(message)
        assert "Strike on Homs" not in text_part(message)

    # Publishing the URL again brings it back.
    back = post(client, "Strike on Homs market", ["Syria"], status=200)
    assert back["status"] == "published"
    with db.session_scope() as session:
        changes = [r.changes for r in session.scalars(
            select(ArticleRevision).where(ArticleRevision.article_id == strike["id"])
            .order_by(ArticleRevision.id))]
    assert changes == [{"status": ["published", "unpublished"]},
                       {"status": ["unpublished", "published"]}]

    result = CliRunner().invoke(cli, ["unpublish", url_of("Strike on Homs market")])
    assert result.exit_code == 0, result.output
    assert f"unpublished {strike['id']}: Strike on Homs market" in result.output
    assert CliRunner().invoke(cli, ["unpublish", "https://news.example/nope"]).exit_code == 1


# ---------------------------------------------------------------- corrections

T0 = datetime(2026, 11, 20, 6, tzinfo=UTC)
SYRIA, ENERGY = 1, 2


def revised(revision_id: int, hours: float, *tags: int) -> Revised:
    return Revised(revision_id, T0 + timedelta(hours=hours), tags)


def test_decide_corrections_on_plain_data() -> None:
    c = Candidates({}, {}, {}, {SYRIA: "Syria", ENERGY: "Energy"}, None,
                   revised={10: revised(100, 5, SYRIA), 11: revised(101, 5.5, ENERGY, SYRIA)})
    reader = ReaderRow(7, T0, frozenset({SYRIA}))
    got = {(7, 10): T0 + timedelta(hours=1), (7, 11): T0 + timedelta(hours=6)}
    d = decide(reader, c, set(), got, set())
    # 10 was received before its revision; 11 was received after it (the new version).
    assert [(x.article_id, x.revision_id, x.topic_id) for x in d.corrections] == [(10, 100, SYRIA)]
    assert d.sections == () and d.article_ids == []
    assert decide(reader, c, set(), got, {(7, 100)}) is None  # already carried once
    assert decide(reader, c, set(), {}, set()) is None  # never received it
    assert decide(ReaderRow(7, T0, frozenset({ENERGY})), c, set(), got, set()) is None
    other = decide(ReaderRow(8, T0, frozenset({SYRIA})), c, set(),
                   {(8, 10): T0, (8, 11): T0}, set())
    assert [x.article_id for x in other.corrections] == [11, 10]  # newest revision first
    same = decide(ReaderRow(9, None, frozenset({SYRIA, ENERGY})), c, set(),
                  {(9, 10): T0}, set())
    # Content keys carry corrections: equal corrections share a rendering, others do not.
    assert same.content_key == d.content_key != other.content_key


def test_a_corrected_article_is_flagged_once_in_the_next_digest(fresh) -> None:
    backend = fresh
    client = TestClient(create_app())
    seed_topics(client)
    add_readers({"alice@example.com": ["syria"], "dave@example.org": ["syria"],
                 "bob@example.net": ["energy"]})
    quake = post(client, "Quake in Aleppo: 3 dead", ["Syria"],
                 summary="Rescuers searched the rubble overnight.")
    post(client, "Brent steady at $80", ["Energy"])
    send_edition(client, backend)
    first = by_recipient(backend.smtp.wait_for(3))
    assert "Quake in Aleppo: 3 dead" in text_part(first["alice@example.com"])
    backend.smtp.clear()

    # The desk corrects the headline; a new reader arrives; Energy has news.
    post(client, "Quake in Aleppo: 30 dead", ["Syria"], url=quake["url"], status=200,
         summary="Rescuers searched the rubble overnight.")
    add_readers({"carol@example.com": ["syria"]})
    post(client, "OPEC holds output", ["Energy"])
    report = send_edition(client, backend)
    assert report["counts"]["sent"] == 4
    second = by_recipient(backend.smtp.wait_for(4))
    assert set(second) == {"alice@example.com", "dave@example.org", "bob@example.net",
                           "carol@example.com"}

    alice = second["alice@example.com"]
    assert str(alice["Subject"]) == (
        "Updated since we sent it: Quake in Aleppo: 30 dead — The Levant Ledger")
    text = text_part(alice)
    assert "A story we sent you has been updated." in text
    assert "UPDATED SINCE WE SENT IT" in text
    assert f"Quake in Aleppo: 30 dead\n{quake['url']}\nUpdated " in text
    assert 'Previously headlined: "Quake in Aleppo: 3 dead"' in text
    page = lxml.html.document_fromstring(html_part(alice))
    assert [h.text_content() for h in page.iter("h2")] == ["Updated since we sent it"]
    assert "Previously headlined: “Quake in Aleppo: 3 dead”" in page.text_content()

    # Only readers who had the story hear of the fix; a new reader simply gets the story.
    for email in ("bob@example.net", "carol@example.com"):
        assert "UPDATED SINCE WE SENT IT" not in text_part(second[email])
        assert "Previously headlined" not in text_part(second[email])
    assert "OPEC holds output" in text_part(second["bob@example.net"])
    carol = text_part(second["carol@example.com"])
    assert f"Quake in Aleppo: 30 dead\n{quake['url']}\n" in carol

    with db.session_scope() as session:
        rows = [(email, item[0], item[3], key) for email, key, items in session.execute(
            select(Reader.email, Delivery.content_key, EditionDigest.items)
            .join(Reader, Reader.id == Delivery.reader_id)
            .join(EditionDigest, (EditionDigest.edition_id == Delivery.edition_id)
                  & (EditionDigest.content_key == Delivery.content_key))
            .where(Delivery.edition_id == report["id"]))
            for item in items if item[1] == quake["id"]]
        revision_id = session.scalar(select(ArticleRevision.id).where(
            ArticleRevision.article_id == quake["id"], ArticleRevision.substantial.is_(True)))
    kinds = {email: (kind, rev) for email, kind, rev, _ in rows}
    assert kinds == {"alice@example.com": ("correction", revision_id),
                     "dave@example.org": ("correction", revision_id),
                     "carol@example.com": ("new", None)}
    keys = {email: key for email, _, _, key in rows}
    assert keys["alice@example.com"] == keys["dave@example.org"] != keys["carol@example.com"]
    assert report["distinct_digests"] == 3
    backend.smtp.clear()

    # A tag change is housekeeping, and the correction was already told: nothing to send.
    post(client, "Quake in Aleppo: 30 dead", ["Syria", "Diplomacy"], url=quake["url"],
         status=200, summary="Rescuers searched the rubble overnight.")
    report = send_edition(client, backend)
    assert report["counts"]["planned"] == 0
    time.sleep(0.5)
    assert backend.smtp.messages() == []
