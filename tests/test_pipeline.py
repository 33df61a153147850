"""The whole path, on each backend, through the HTTP app and a real Celery worker.

reader subscribes → confirms → editor publishes → edition requested → worker plans and
sends over SMTP → deliveries recorded; then a second edition sends nothing new, and a
one-click unsubscribe stops the next one.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from email.message import EmailMessage

from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter import db, events
from newsletter.models import Delivery, OutboxEvent, Reader
from newsletter.web.app import create_app
from tests.conftest import ADMIN_TOKEN, dump_log, post_subscribe

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

READERS = {
    "syria.fan@example.com": ["syria"],
    "energy.desk@example.org": ["energy", "gulf"],
    "levant.watch@example.net": ["syria", "jordan", "lebanon"],
    "iran.only@example.com": ["iran"],  # nothing on Iran this week: no digest
}
ARTICLES = [
    ("Aid reaches Idlib", ["Syria", "Diplomacy"]),
    ("Amman water deal signed", ["Jordan", "Energy"]),
    ("Gulf funds Levant solar", ["Gulf", "Energy", "Syria"]),
    ("Beirut port rebuilt", ["Lebanon"]),
    ("Brent steady at $80", ["Energy"]),
    ("Kremlin envoy in Doha", ["Russia"]),
]
# What each reader should get, by title.
EXPECTED = {
    "syria.fan@example.com": {"Aid reaches Idlib", "Gulf funds Levant solar"},
    "energy.desk@example.org": {"Amman water deal signed", "Gulf funds Levant solar",
                                "Brent steady at $80"},
    "levant.watch@example.net": {"Aid reaches Idlib", "Amman water deal signed",
                                 "Gulf funds Levant solar", "Beirut port rebuilt"},
}


def url_of(title: str) -> str:
    return "https://news.example/a/" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def wait_edition(client: TestClient, edition_id: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = client.get(f"/api/editions/{edition_id}", headers=AUTH).json()
        if report["status"] in ("done", "failed", "paused"):
            return report
        time.sleep(0.1)
    raise AssertionError(f"edition {edition_id} stuck: {report}")


# On the wire lines end in CRLF; Python's parser keeps them in decoded bodies.
def text_part(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def html_part(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content().replace("\r\n", "\n")


def subscribe_and_confirm(client: TestClient, backend) -> None:
    # Topics must exist before readers can choose them: the editors offer them.
    for name in ["Syria", "Energy", "Gulf", "Jordan", "Lebanon", "Iran"]:
        r = client.post("/api/topics", headers=AUTH, json={"name": name})
        assert r.status_code == 201, r.text
    for email, topics in READERS.items():
        r = post_subscribe(client, email=email, topics=topics, frequency="weekly",
                           consent="yes")
        assert r.status_code == 200 and "Check your inbox" in r.text
    confirmations = backend.smtp.wait_for(len(READERS))
    with db.session_scope() as session:
        assert all(r.status == "pending" for r in session.scalars(select(Reader)))
    for message in confirmations:
        assert message["Subject"].startswith("Confirm")
        for link in ("/unsubscribe/", "/preferences/", "/emails/"):
            assert link in text_part(message) and link in html_part(message)
        token = re.search(r"/confirm/([\w.\-]+)", text_part(message)).group(1)
        page = client.get(f"/confirm/{token}")
        assert page.status_code == 200
        with db.session_scope() as session:  # GET changed nothing
            assert session.scalar(select(Reader.status).where(
                Reader.email == str(message["To"]))) == "pending"
        assert client.post(f"/confirm/{token}").status_code == 200
    with db.session_scope() as session:
        assert {r.email for r in session.scalars(select(Reader).where(
            Reader.status == "active"))} == set(READERS)
    # Confirming sends one welcome each, with the reader's own links.
    welcomes = backend.smtp.wait_for(2 * len(READERS))[len(READERS):]
    assert sorted(str(m["To"]) for m in welcomes) == sorted(READERS)
    for message in welcomes:
        assert message["Subject"].startswith("Welcome")
        text = text_part(message)
        assert "/preferences/" in text and "/unsubscribe/" in text and "/emails/" in text
    backend.smtp.clear()


def test_edition_end_to_end(fresh) -> None:
    backend = fresh
    client = TestClient(create_app())
    subscribe_and_confirm(client, backend)

    for title, tags in ARTICLES:
        r = client.post("/api/articles", headers=AUTH, json={
            "url": url_of(title), "title": title, "summary": f"Summary of {title}.",
            "author": "Desk", "tags": tags})
        assert r.status_code == 201, r.text

    r = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly"})
    assert r.status_code == 202 and r.json()["status"] == "planning"
    report = wait_edition(client, r.json()["id"])
    assert report["status"] == "done", dump_log(backend)
    assert report["counts"]["planned"] == report["counts"]["sent"] == len(EXPECTED)
    assert report["distinct_digests"] == len(EXPECTED)

    messages = backend.smtp.wait_for(len(EXPECTED))
    assert sorted(str(m["To"]) for m in messages) == sorted(EXPECTED)
    with db.session_scope() as session:
        message_ids = {d.message_id for d in session.scalars(select(Delivery))}
    for message in messages:
        check_headers(message, message_ids)
        check_body(message, EXPECTED[str(message["To"])])

    # The archive ("view in browser") shows the edition without anyone's personal links.
    archive = client.get(f"/editions/{report['id']}")
    assert archive.status_code == 200
    for title in set().union(*EXPECTED.values()):
        assert title in archive.text
    assert "/unsubscribe/" not in archive.text and "/preferences/" not in archive.text

    # A second edition right away has nothing new for anyone: no email at all.
    r = client.post("/api/editions", headers=AUTH, json={"frequency": "weekly"})
    report = wait_edition(client, r.json()["id"])
    assert report["status"] == "done" and report["counts"]["planned"] == 0
    time.sleep(0.5)
    assert len(backend.smtp.received) == len(EXPECTED)

    # One-click unsubscribe from the header (RFC 8058), then new articles: the reader who
    # left gets nothing, the others get only what is new.
    leaver = next(m for m in messages if str(m["To"]) == "energy.desk@example.org")
    link = re.match(r"<(https://news\.example(/unsubscribe/[^>]+))>", leaver["List-Unsubscribe"])
    r = client.post(link.group(2), data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and not r.is_redirect
    assert client.post(link.group(2), files={"List-Unsubscribe": (None, "One-Click")}
                       ).status_code == 200  # idempotent, multipart too
    backend.smtp.clear()
    client.post("/api/articles", headers=AUTH, json={
        "url": url_of("OPEC holds output"), "title": "OPEC holds output", "summary": "…",
        "tags": ["Energy", "Syria"]})
    report = wait_edition(client, client.post("/api/editions", headers=AUTH,
                                              json={"frequency": "weekly"}).json()["id"])
    assert report["counts"]["sent"] == 2, report
    third = backend.smtp.wait_for(2)
    assert sorted(str(m["To"]) for m in third) == ["levant.watch@example.net",
                                                   "syria.fan@example.com"]
    for message in third:
        check_body(message, {"OPEC holds output"})


def check_headers(message: EmailMessage, message_ids: set[str]) -> None:
    for name in ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
                 "List-Unsubscribe-Post"):
        assert message[name], f"missing {name}"
    assert message["Message-ID"] in message_ids  # fixed when the delivery row was made
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(r"<https://news\.example/unsubscribe/[\w.\-]+>.*",
                        message["List-Unsubscribe"])
    assert message["List-Id"] == "<digest.news.example>"
    assert message.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]


def check_body(message: EmailMessage, titles: set[str]) -> None:
    text, html = text_part(message), html_part(message)
    every = {t for t, _ in ARTICLES} | {"OPEC holds output"}
    for title in every:
        count = text.count(url_of(title) + "\n")
        assert count == (1 if title in titles else 0), (message["To"], title, count)
        if title in titles:
            assert title in html
    # CSS inlined: content carries style=, and only media queries stay in <style>.
    assert re.search(r'<a [^>]*href="' + re.escape(url_of(next(iter(titles)))) + '"[^>]*style="',
                     html) or re.search(r'<a [^>]*style="[^"]*"[^>]*href="'
                                        + re.escape(url_of(next(iter(titles)))), html)
    for block in re.findall(r"<style[^>]*>(.*?)</style>", html, re.S):
        stripped = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", block).strip()
        assert stripped == "", f"non-media CSS left in <style>: {stripped[:200]}"
    assert "/unsubscribe/" in html and "/preferences/" in html and "/editions/" in html


def test_outbox_survives_a_broker_outage(fresh) -> None:
    """Events written while the broker is unreachable are sent by the relay later."""
    backend = fresh
    client = TestClient(create_app())

    def broker_down(*_args):
        raise ConnectionError("broker unreachable")

    client.post("/api/articles", headers=AUTH, json={
        "url": url_of("Seed"), "title": "Seed", "summary": "", "tags": ["Syria"]})
    client.post("/api/topics", headers=AUTH, json={"name": "Syria"})  # offered to readers
    events.set_dispatcher(broker_down)
    try:
        r = post_subscribe(client, email="late@example.com", topics=["syria"],
                           frequency="daily", consent="yes")
        assert r.status_code == 200
    finally:
        events.set_dispatcher(None)
    with db.session_scope() as session:
        pending = session.scalars(select(OutboxEvent).where(
            OutboxEvent.dispatched_at.is_(None), OutboxEvent.name == events.READER_SUBSCRIBED)
        ).all()
        assert len(pending) == 1
    time.sleep(0.5)
    assert backend.smtp.received == []
    with db.session_scope() as session:
        assert events.dispatch_pending(session, older_than=timedelta(0)) == 1
    [message] = backend.smtp.wait_for(1)
    assert str(message["To"]) == "late@example.com"
    with db.session_scope() as session:
        assert session.scalar(select(OutboxEvent.dispatched_at).where(
            OutboxEvent.id == pending[0].id)) is not None


def test_unsubscribe_suppresses_queued_deliveries(fresh) -> None:
    """An unsubscribe also stops deliveries already queued for that reader."""
    backend = fresh
    client = TestClient(create_app())
    subscribe_and_confirm(client, backend)
    client.post("/api/articles", headers=AUTH, json={
        "url": url_of("Aid reaches Idlib"), "title": "Aid reaches Idlib", "summary": "",
        "tags": ["Syria"]})
    from newsletter import tokens
    from newsletter.editions import planning
    from newsletter.editions import requests as editions

    # Keep the worker out of it: plan here, and leave the batches queued, unsent.
    events.set_dispatcher(lambda *_: False)
    try:
        with db.session_scope() as session:
            edition = editions.request(session, "weekly", source="test")
        with db.session_scope() as session:
            planning.plan(session, edition.id)
    finally:
        events.set_dispatcher(None)
    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == "syria.fan@example.com"))
        token = tokens.make("unsubscribe", reader.id, reader.email, e=edition.id)
    assert client.post(f"/unsubscribe/{token}",
                       data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with db.session_scope() as session:
        statuses = dict(session.execute(select(Reader.email, Delivery.status).join(
            Delivery, Delivery.reader_id == Reader.id)).all())
    assert statuses["syria.fan@example.com"] == "suppressed"
    assert statuses["levant.watch@example.net"] == "queued"
