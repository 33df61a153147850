"""Previews and test sends, on each backend with a real worker and SMTP server.

A preview is exactly the digest the next edition would send, and it changes nothing; a test
send is one "[TEST]" email to an editor that records nothing as delivered.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter import db
from newsletter.cli import app as cli
from newsletter.editions import preview
from newsletter.editions import requests as editions
from newsletter.models import Delivery, EditionDigest, OutboxEvent, Reader
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log, topics_for
from tests.helpers import (
    add_readers,
    count,
    html_part,
    invoke,
    publish,
    runner,
    url_of,
    wait_done,
)

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EDITOR = "editor@news.example"


def state() -> tuple:
    """Everything a preview must leave alone."""
    with db.session_scope() as session:
        return (count(Delivery), count(EditionDigest), count(OutboxEvent),
                tuple(session.execute(select(Reader.id, Reader.last_digest_at, Reader.status)
                                      .order_by(Reader.id))))


@pytest.fixture
def newsroom(fresh):
    publish("Aid reaches Idlib", ["Syria"])
    publish("Brent steady", ["Energy"])
    publish("Solar in Homs", ["Syria", "Energy"])
    add_readers({"syria@example.com": ["syria"]})
    add_readers({"both@example.net": ["syria", "energy"]}, frequency="daily")
    return fresh


def test_preview_is_the_next_digest_and_changes_nothing(newsroom) -> None:
    before = state()
    with db.session_scope() as session:
        mine = preview.build(session, email="Syria@Example.com")
        tags = preview.build(session, tags=["Energy"], frequency="daily")
    assert (mine.frequency, mine.recipient, mine.article_count) == ("weekly",
                                                                    "syria@example.com", 2)
    assert "Aid reaches Idlib" in mine.html and "Solar in Homs" in mine.html
    assert "Brent steady" not in mine.html
    assert mine.subject.startswith("Your weekly digest: 2 stories on Syria")
    # Links are inert samples, never a real reader's token.
    assert "https://news.example/unsubscribe/preview" in mine.html
    assert (tags.recipient, tags.article_count) == (preview.SAMPLE_EMAIL, 2)
    assert "Brent steady" in tags.html and "Aid reaches Idlib" not in tags.html
    assert state() == before

    # After the real edition, the same preview has nothing new: the same decision code.
    with db.session_scope() as session:
        edition_id = editions.request(session, "weekly", source="test").id
    assert wait_done(edition_id)["counts"]["sent"] == 1, dump_log(newsroom)
    newsroom.smtp.wait_for(1)
    with db.session_scope() as session, pytest.raises(preview.NothingToPreview):
        preview.build(session, email="syria@example.com")
    publish("Damascus reopens", ["Syria"])
    with db.session_scope() as session:
        again = preview.build(session, email="syria@example.com")
    assert again.article_count == 1 and "Damascus reopens" in again.html


def _comparable(html: str) -> str:
    # The per-reader links (samples in a preview, tokens in a send) and the archive link (a
    # preview's edition has no page yet) are the only differences a reader may see; and the
    # story links, which go through /r/ in a send (counted) and straight in a preview (an
    # edition never saved has nothing to count): html_part reads them as where they lead.
    html = html.replace("\r\n", "\n").strip()  # the MIME part ends in a line break
    html = re.sub(r"https://news\.example/(unsubscribe|preferences)/[^\"<\s]*", r"<\1>", html)
    return re.sub(r"https://news\.example/editions/\d+", "https://news.example", html)


def test_the_preview_is_the_email_the_send_delivers(newsroom) -> None:
    """Preview and send render through the same path (editions.content's plain data and
    the renderer's rendered_digest): what the editor sees is what the reader gets."""
    with db.session_scope() as session:
        shown = preview.build(session, email="syria@example.com")
        edition_id = editions.request(session, "weekly", source="test").id
    assert wait_done(edition_id)["counts"]["sent"] == 1, dump_log(newsroom)
    (sent,) = newsroom.smtp.wait_for(1)
    assert sent["Subject"] == shown.subject
    assert _comparable(html_part(sent)) == _comparable(shown.html)


def test_preview_refuses_what_it_cannot_show(newsroom) -> None:
    with db.session_scope() as session:  # offered, though nobody follows it yet
        topics_for(session, ["iran"])
    with db.session_scope() as session:
        with pytest.raises(preview.ReaderNotFound):
            preview.build(session, email="nobody@example.com")
        with pytest.raises(preview.PreviewError, match="unknown tag"):
            preview.build(session, tags=["atlantis"])
        with pytest.raises(preview.PreviewError, match="not both"):
            preview.build(session, email="syria@example.com", tags=["syria"])
        with pytest.raises(preview.PreviewError, match="not both"):
            preview.build(session)
        with pytest.raises(preview.PreviewError, match="frequency"):
            preview.build(session, tags=["syria"], frequency="hourly")
        publish("Tehran archive", ["Iran"], published_at="2020-01-01T00:00:00+00:00")
        with pytest.raises(preview.NothingToPreview):
            preview.build(session, tags=["iran"])


def test_preview_over_http_and_the_cli(newsroom, tmp_path) -> None:
    client = TestClient(create_app())
    r = client.get("/api/preview", params={"email": "both@example.net"}, headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert all(t in r.text for t in ("Aid reaches Idlib", "Brent steady", "Solar in Homs"))
    assert "Daily digest" in r.text
    r = client.get("/api/preview", params=[("tag", "energy"), ("tag", "syria"),
                                          ("frequency", "weekly")], headers=AUTH)
    assert r.status_code == 200 and "Brent steady" in r.text
    assert client.get("/api/preview", params={"email": "x@example.com"},
                      headers=AUTH).status_code == 404
    assert client.get("/api/preview", params={"tag": "iran"}, headers=AUTH).status_code == 422
    assert client.get("/api/preview", headers=AUTH).status_code == 422
    assert client.get("/api/preview", params={"email": "both@example.net"}).status_code == 401

    out_file = tmp_path / "p.html"
    out = invoke("preview", "--email", "both@example.net", "--out", str(out_file))
    assert "subject: Your daily digest: 3 stories" in out and "3 articles" in out
    assert "Brent steady" in out_file.read_text()
    result = runner.invoke(cli, ["preview", "--email", "nobody@example.com"])
    assert result.exit_code == 1 and "no reader" in result.output


def test_test_send_is_one_marked_email_and_records_no_delivery(newsroom) -> None:
    backend = newsroom
    client = TestClient(create_app())
    before = state()
    r = client.post("/api/editions/test-send", headers=AUTH,
                    json={"to": EDITOR, "email": "syria@example.com"})
    assert r.status_code == 202, r.text
    assert r.json()["subject"].startswith("[TEST] Your weekly digest")
    [message] = backend.smtp.wait_for(1)
    assert str(message["To"]) == EDITOR
    assert message["Subject"].startswith("[TEST] Your weekly digest: 2 stories on Syria")
    text = message.get_body(("plain",)).get_content()
    assert url_of("Aid reaches Idlib") in text and url_of("Brent steady") not in text
    assert re.fullmatch(r"<https://news\.example/unsubscribe/preview>.*",
                        message["List-Unsubscribe"])
    deliveries, articles_, outbox, readers = state()
    assert (deliveries, articles_, readers) == (before[0], before[1], before[3])
    assert outbox == before[2] + 1  # the test send's own event, nothing else

    out = invoke("send", "--test-to", "desk@news.example", "--tag", "energy",
                 "--frequency", "daily")
    assert "test send queued to desk@news.example: [TEST]" in out
    second = backend.smtp.wait_for(2)[1]
    assert str(second["To"]) == "desk@news.example" and "Brent steady" in second.get_body(
        ("plain",)).get_content()

    assert client.post("/api/editions/test-send", headers=AUTH,
                       json={"to": "not an address", "tags": ["syria"]}).status_code == 422
    assert client.post("/api/editions/test-send", headers=AUTH,
                       json={"to": EDITOR, "email": "nobody@example.com"}).status_code == 404
    with db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
