"""Click counting in the insight room: the scanner rule, the signed links and their key
rotation, the buffer that writes counts in batches (never losing them to a failed write), and
the figures the console and the admin API give."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from newsletter import click_links, db, sql
from newsletter.config import reload_settings
from newsletter.errors import InvalidToken
from newsletter.insight import click_figures, clicks
from newsletter.models import Delivery, Edition, StoryClicks, utcnow
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, add_editor, console_client, sign_in
from tests.helpers import add_readers, publish

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
SAFARI = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Version/17.0 Safari"


@pytest.mark.parametrize(("method", "agent", "sent_ago_s", "counted"), [
    ("GET", SAFARI, 5, True),  # a reader who opens the email at once
    ("HEAD", SAFARI, 3600, False),  # a check of the link, whoever makes it
    ("GET", "Mozilla/5.0 (compatible; BingPreview/1.0b)", 3600, False),
    ("GET", "facebookexternalhit/1.1 Facebot Twitterbot/1.0", 3600, False),  # iMessage previews
    ("GET", "Microsoft Office Existence Discovery", 3600, False),
    ("GET", "Mozilla/5.0 HeadlessChrome/120.0", 3600, False),
    ("GET", None, 30, False),  # no agent, right after sending: a gateway's scanner
    ("GET", "python-requests/2.32", 30, False),
    ("GET", "Go-http-client/1.1", 119, False),
    ("GET", None, 121, True),  # past the window: a privacy browser or a text client
    ("GET", "curl/8.5", 3600, True),
    ("GET", None, None, True),  # nothing known of when it was sent
])
def test_the_scanner_rule(method, agent, sent_ago_s, counted) -> None:
    sent_at = None if sent_ago_s is None else NOW - timedelta(seconds=sent_ago_s)
    assert clicks.counts(method, agent, sent_at, NOW, 120.0) is counted


def test_links_are_signed_compact_and_survive_a_key_rotation(monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEYS", "old-key")
    reload_settings()
    try:
        token, part = click_links.story_token(12, 345, 6), click_links.reader_part(789)
        assert len(token) < 50 and len(part) < 40
        monkeypatch.setenv("NEWSLETTER_SECRET_KEYS", "new-key,old-key")  # rotated
        reload_settings()
        assert click_links.read(token, part[1:]) == click_links.ClickTarget(12, 345, 6, 789)
        assert click_links.story_token(12, 345, 6) != token  # signed with the new key now
        monkeypatch.setenv("NEWSLETTER_SECRET_KEYS", "new-key")  # the old key retired
        reload_settings()
        with pytest.raises(InvalidToken):
            click_links.read(token)
        # Another purpose's signature does not pass for a story link (or the other way).
        with pytest.raises(InvalidToken):
            click_links.read(click_links.reader_part(345)[1:])
        with pytest.raises(InvalidToken):
            click_links.read(click_links.story_token(1, 2, 3), click_links.story_token(4, 5, 6))
    finally:
        monkeypatch.undo()
        reload_settings()


def _rows() -> dict:
    with db.session_scope() as session:
        return {(r.edition_id, r.article_id, r.topic_id, r.delivery_id): r.clicks
                for r in session.scalars(select(StoryClicks))}


def test_the_buffer_counts_every_click_from_many_threads_and_adds_to_what_is_stored(fresh) -> None:
    buffer = clicks.ClickBuffer(interval=3600)  # flushed by hand here
    try:
        a, b = click_links.ClickTarget(1, 10, 100), click_links.ClickTarget(1, 11, 100, 7)

        def click(n: int) -> None:
            for _ in range(n):
                buffer.add(a)
                buffer.add(b)

        threads = [threading.Thread(target=click, args=(250,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert buffer.flush() == 2000
        assert _rows() == {(1, 10, 100, 0): 1000, (1, 11, 100, 7): 1000}
        buffer.add(a)
        assert buffer.flush() == 1 and buffer.flush() == 0
        assert _rows()[(1, 10, 100, 0)] == 1001  # added, not overwritten
    finally:
        buffer.close()


def test_a_failed_write_keeps_the_counts_for_the_next(fresh) -> None:
    buffer = clicks.ClickBuffer(interval=3600)
    try:
        target = click_links.ClickTarget(2, 20, 200)
        buffer.add(target)
        with db.session_scope() as session:  # the table is away: every write fails
            session.execute(text("ALTER TABLE story_clicks RENAME TO story_clicks_away"))
        buffer.add(target)
        assert buffer.flush() == 0
        with db.session_scope() as session:
            session.execute(text("ALTER TABLE story_clicks_away RENAME TO story_clicks"))
        buffer.add(target)
        assert buffer.flush() == 3
        assert _rows() == {(2, 20, 200, 0): 3}
    finally:
        buffer.close()


def test_the_default_interval_writes_within_about_a_second(fresh) -> None:
    from newsletter.config import get_settings

    assert get_settings().click_flush_seconds == 1.0
    clicks.record(click_links.ClickTarget(3, 30, 300))
    try:
        deadline = utcnow() + timedelta(seconds=5)
        while utcnow() < deadline and not _rows():
            threading.Event().wait(0.1)
        assert _rows() == {(3, 30, 300, 0): 1}
    finally:
        clicks.stop()


def test_the_figures_per_story_and_topic_and_the_readers_share(fresh, dispatcher,
                                                               monkeypatch) -> None:
    dispatcher.accept()
    aid, brent = publish("Aid reaches Idlib", ["Syria"]), publish("Brent <b>steady</b>", ["Energy"])
    readers = add_readers({"a@example.com": ["syria"], "b@example.com": ["syria"],
                           "c@example.com": ["energy"], "d@example.com": ["energy"]})
    with db.session_scope() as session:
        edition = Edition(frequency="weekly", status="done", started_at=utcnow())
        session.add(edition)
        session.flush()
        deliveries = []
        for n, reader_id in enumerate(readers.values()):
            d = Delivery(edition_id=edition.id, reader_id=reader_id, status="sent",
                         message_id=f"<{n}@x>", content_key=str(n), sent_at=utcnow())
            session.add(d)
            session.flush()
            deliveries.append(d.id)
        sql.add_story_clicks(session, [
            {"edition_id": edition.id, "article_id": aid, "topic_id": 1, "delivery_id": 0,
             "clicks": 5, "last_at": utcnow()},
            {"edition_id": edition.id, "article_id": brent, "topic_id": 2, "delivery_id": 0,
             "clicks": 2, "last_at": utcnow()}])
        edition_id = edition.id
    client = TestClient(create_app())
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    figures = client.get(f"/api/editions/{edition_id}/clicks", headers=auth).json()
    assert figures["total"] == 7 and figures["mode"] == "aggregate"
    assert [(s["title"], s["clicks"]) for s in figures["stories"]] == [
        ("Aid reaches Idlib", 5), ("Brent <b>steady</b>", 2)]
    assert figures["readers"] is None  # aggregate counts name nobody: no share to give
    assert client.get(f"/api/editions/{edition_id}/clicks").status_code == 401
    assert client.get("/api/editions/999999/clicks", headers=auth).status_code == 404

    # Reader mode: two of the four readers clicked.
    with db.session_scope() as session:
        sql.add_story_clicks(session, [
            {"edition_id": edition_id, "article_id": aid, "topic_id": 1, "delivery_id": d,
             "clicks": 1, "last_at": utcnow()} for d in deliveries[:2]])
        readers_share = click_figures.edition_clicks(session, edition_id)["readers"]
        top = click_figures.top_stories(session)
    assert readers_share == {"sent": 4, "clicked": 2, "share": 0.5}
    assert [(s["title"], s["clicks"]) for s in top] == [("Aid reaches Idlib", 7),
                                                        ("Brent <b>steady</b>", 2)]

    # The edition page in reader mode: the share, and story titles as text.
    monkeypatch.setenv("NEWSLETTER_CLICK_TRACKING", "reader")
    reload_settings()
    try:
        add_editor("desk@news.example")
        console = console_client()
        assert sign_in(console, "desk@news.example").status_code == 303
        page = console.get(f"/admin/editions/{edition_id}").text
        assert "Readers who clicked" in page and "50.0&nbsp;%" in page
        assert "Brent &lt;b&gt;steady&lt;/b&gt;" in page and "<b>steady" not in page
        assert "CLICK_TRACKING=reader" in page and "Privacy Protection" in page
        dashboard = console.get("/admin").text
        assert "Top stories of the week" in dashboard and "Brent &lt;b&gt;steady" in dashboard
    finally:
        monkeypatch.undo()
        reload_settings()
