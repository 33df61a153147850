"""Article and feed text never reaches the personalisation machinery (issue 16, item 1).

A story's link, title, summary, byline or tag may spell our old marker names
(``__nl_email__``, ``__nl_preferences_url__``) or hold control characters. Through the
real API, a real feed import, a real worker and a real SMTP server, on each backend: every
reader gets the story with that text as written (minus control characters), never their
own address or links in its place, and the edition finishes.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from newsletter import db
from newsletter.cli import app as cli
from newsletter.models import Article, Delivery, Tag, utcnow
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log
from tests.helpers import html_part, text_part, wait_edition

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
READERS = ["amal@example.com", "omar@example.org"]
EVIL_LINK = "https://evil.example/r?p=__nl_preferences_url__&e=__nl_email__&u=__nl_unsubscribe_url__"
HOSTILE = {
    "url": EVIL_LINK,
    "title": "Breaking\x01 __nl_x__ news __nls_0__\x1b",
    "summary": "Read on\x00 at __nl_preferences_url__ or mail __nl_email__\x7f.",
    "author": "By __nl_unsubscribe_url__\x02",
    "tags": ["Syria", "Syr\x01ia __nl_email__"],
}


def _readers(client: TestClient) -> None:
    seed = client.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/seed", "title": "Seed", "summary": "old", "tags": ["Syria"],
        "published_at": (utcnow() - timedelta(days=30)).isoformat()})
    assert seed.status_code == 201, seed.text
    assert client.post("/api/topics", headers=AUTH, json={"name": "Syria"}).status_code == 201
    r = client.post("/api/subscribers", headers=AUTH, json=[
        {"email": e, "topics": ["syria"], "frequency": "weekly",
         "consented_at": (utcnow() - timedelta(days=60)).isoformat()} for e in READERS])
    assert r.status_code == 200 and r.json()["created"] == len(READERS), r.text


def _edition(client: TestClient, backend) -> dict:
    r = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly"})
    assert r.status_code == 202, r.text
    try:
        return wait_edition(client, r.json()["id"], timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{dump_log(backend)}") from None


def _links(message) -> tuple[list[str], str, str]:
    # Story links as the story URLs they redirect to (click counting is on by default).
    body_html, text = html_part(message), text_part(message)
    hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]*)"', body_html)]
    return hrefs, body_html, text


def _assert_text_stayed_text(backend, report: dict) -> None:
    assert report["status"] == "done", report
    assert report["counts"]["sent"] == len(READERS) and report["counts"]["failed"] == 0, report
    messages = backend.smtp.wait_for(len(READERS))
    assert sorted(str(m["To"]) for m in messages) == sorted(READERS)
    for message in messages:
        reader = str(message["To"])
        hrefs, body_html, text = _links(message)
        evil = [h for h in hrefs if h.startswith("https://evil.example/")]
        assert evil and set(evil) == {EVIL_LINK}, evil  # the link exactly as the feed gave it
        assert EVIL_LINK in text
        # The reader's own links are where the template put them, and nowhere else.
        own = [h for h in hrefs if "/preferences/" in h or "/unsubscribe/" in h]
        assert own and all(h.startswith("https://news.example/") for h in own)
        for part in (body_html, text):
            assert "__nl_x__ news __nls_0__" in part
            assert "__nl_preferences_url__ or mail __nl_email__" in part
            assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", part)
        assert reader not in EVIL_LINK and "evil.example" not in text.split(EVIL_LINK)[0][-5:]
        assert "\x01" not in str(message["Subject"])


def test_hostile_article_text_through_the_api_is_sent_as_text(fresh) -> None:
    client = TestClient(create_app())
    _readers(client)
    r = client.post("/api/articles", headers=AUTH, json=HOSTILE)
    assert r.status_code == 201, r.text
    stored = r.json()
    assert stored["title"] == "Breaking __nl_x__ news __nls_0__"
    assert stored["author"] == "By __nl_unsubscribe_url__"
    assert "\x00" not in stored["summary"] and "\x7f" not in stored["summary"]
    with db.session_scope() as session:
        assert "Syria __nl_email__" in set(session.scalars(select(Tag.name)))
    fresh.smtp.clear()
    _assert_text_stayed_text(fresh, _edition(client, fresh))


def test_a_link_with_control_characters_is_refused_and_changes_nothing(fresh) -> None:
    client = TestClient(create_app())
    for url in ("https://news.example/a\x01b", "https://news.example/a\x00", "https://news.example/a b"):
        r = client.post("/api/articles", headers=AUTH, json={**HOSTILE, "url": url})
        assert r.status_code == 422 and "control characters" in r.text, r.text
    with db.session_scope() as session:
        assert session.scalar(select(Article.id)) is None


FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Hostile</title><link>https://evil.example/</link>
<description>x</description>
<item><title>Breaking __nl_x__ news __nls_0__</title>
<link>{link}</link><guid isPermaLink="false">evil-1</guid>
<pubDate>{date}</pubDate><category>Syria</category>
<description>Read on at __nl_preferences_url__ or mail __nl_email__.</description></item>
</channel></rss>
"""


def test_hostile_feed_entry_is_sent_as_text(fresh, tmp_path: Path) -> None:
    client = TestClient(create_app())
    _readers(client)
    feed = tmp_path / "hostile.rss"
    when = utcnow().strftime("%a, %d %b %Y %H:%M:%S GMT")
    feed.write_text(FEED.format(link=html.escape(EVIL_LINK), date=when))
    result = CliRunner().invoke(cli, ["import-feed", str(feed)])
    assert result.exit_code == 0 and "1 created" in result.output.replace("  ", " "), result.output
    fresh.smtp.clear()
    _assert_text_stayed_text(fresh, _edition(client, fresh))


def test_rows_stored_before_the_guard_still_render_as_text(fresh) -> None:
    """Articles stored by an older version may hold control characters: rendering strips
    them from every printed value, and the edition finishes."""
    client = TestClient(create_app())
    _readers(client)
    r = client.post("/api/articles", headers=AUTH, json={**HOSTILE, "title": "placeholder"})
    assert r.status_code == 201
    with db.session_scope() as session:  # as an older version would have stored it
        session.execute(update(Article).where(Article.id == r.json()["id"]).values(
            title="Breaking\x01 __nl_x__ news __nls_0__\x1b", author="By\x08 __nl_unsubscribe_url__"))
    fresh.smtp.clear()
    _assert_text_stayed_text(fresh, _edition(client, fresh))


def test_one_reader_whose_message_cannot_be_built_fails_alone_with_a_reason(fresh) -> None:
    client = TestClient(create_app())
    _readers(client)
    assert client.post("/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/1", "title": "Aid reaches Idlib", "summary": "s",
        "tags": ["Syria"]}).status_code == 201
    with db.session_scope() as session:  # an address stored before the form checked it
        from newsletter.models import Reader

        session.execute(update(Reader).where(Reader.email == READERS[0]).values(
            email="amal@example.com\r\nBcc: all@evil.example"))
    fresh.smtp.clear()
    report = _edition(client, fresh)
    assert report["status"] == "done", report
    assert report["counts"]["sent"] == 1 and report["counts"]["failed"] == 1, report
    [failure] = report["failures"]
    assert failure["count"] == 1 and "could not build the message" in failure["reason"]
    assert "evil.example" not in failure["reason"]  # no address in an edition's report
    [message] = fresh.smtp.wait_for(1)
    assert str(message["To"]) == READERS[1]
    with db.session_scope() as session:
        assert session.scalar(select(Delivery.status).where(
            Delivery.status.in_(("queued", "sending", "retry")))) is None
