"""Helpers more than one test module uses: seeding a newsroom and its readers, waiting for an
edition, reading an email's parts, sample email data. (Fixtures live in tests/conftest.py.)"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from newsletter import click_links, db
from newsletter.cli import app as cli
from newsletter.cli import console
from newsletter.editions import reports
from newsletter.errors import InvalidToken
from newsletter.mail.rendering import placeholder
from newsletter.models import Article, Reader, utcnow
from newsletter.newsroom import articles
from newsletter.states import FINISHED
from tests.conftest import ADMIN_TOKEN, topics_for

# Sample feeds, bounce reports and imports, of our own making.
DATA = Path(__file__).parent / "data"

runner = CliRunner()
console.width = 160  # not a terminal under CliRunner: rich would wrap tables at 80 columns


# ---------------------------------------------------------------- the newsroom and its readers

def url_of(title: str) -> str:
    return "https://news.example/a/" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def publish(title: str, tags: list[str], **extra) -> int:
    with db.session_scope() as session:
        article, _ = articles.publish(session, {
            "url": url_of(title), "title": title, "summary": f"Summary of {title}.",
            "tags": tags, **extra})
        return article.id


def add_readers(readers: dict[str, Iterable[str]], frequency: str = "weekly") -> dict[str, int]:
    """Active readers following the given tag slugs (confirmed already: seeding, not a test
    of the subscribe path)."""
    ids = {}
    with db.session_scope() as session:
        for email, slugs in readers.items():
            reader = Reader(email=email, status="active", frequency=frequency, source="test",
                            confirmed_at=utcnow(), topics=topics_for(session, slugs))
            session.add(reader)
            session.flush()
            ids[email] = reader.id
    return ids


READERS = {
    "syria.a@example.com": ["syria"],
    "syria.b@example.com": ["syria"],  # the same digest as syria.a
    "energy@example.org": ["energy"],
    "both@example.net": ["syria", "energy"],
    "iran@example.com": ["iran"],  # nothing on Iran this week: considered, not emailed
}


def newsroom() -> None:
    """A week of stories and readers: three digests for four emails; one reader has nothing
    new, another reads daily."""
    publish("Tehran archive", ["Iran"], published_at=(utcnow() - timedelta(days=40)).isoformat())
    publish("Aid reaches Idlib", ["Syria"])
    publish("Brent steady", ["Energy"])
    publish("Solar in Homs", ["Syria", "Energy"])
    add_readers(READERS)
    add_readers({"daily@example.com": ["syria"]}, frequency="daily")  # not in a weekly edition


def count(model, *where) -> int:
    with db.session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def invoke(*args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


# ---------------------------------------------------------------- waiting for an edition

def wait_done(edition_id: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session_scope() as session:
            report = reports.report(session, edition_id)
        if report["status"] in FINISHED:
            return report
        time.sleep(0.1)
    raise AssertionError(f"edition {edition_id} did not finish: {report}")


def wait_edition(client: TestClient, edition_id: int, timeout: float = 90) -> dict:
    """The same wait, through the admin API."""
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = client.get(f"/api/editions/{edition_id}", headers=auth).json()
        if report["status"] in ("done", "failed", "paused"):
            return report
        time.sleep(0.1)
    raise AssertionError(f"edition {edition_id} stuck: {report}")


# ---------------------------------------------------------------- emails

# On the wire lines end in CRLF; Python's parser keeps them in decoded bodies. Story links
# go through /r/ (click counting, on by default): read as the story's URL they lead to, what
# the reader lands on; ``raw`` keeps them (tests/web/test_clicks.py).
def text_part(message: EmailMessage, raw: bool = False) -> str:
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    return text if raw else story_urls(text)


def html_part(message: EmailMessage, raw: bool = False) -> str:
    body = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    return body if raw else story_urls(body, escape=True)


STORY_LINK = re.compile(r"https://news\.example/r/([A-Za-z0-9_\-.]+)(?:/([A-Za-z0-9_\-.]+))?")


def story_urls(text: str, escape: bool = False) -> str:
    """``text`` with each /r/ story link replaced by the URL of the story it redirects to."""
    def url(match: re.Match) -> str:
        try:
            target = click_links.read(match[1], match[2])
        except InvalidToken:
            return match[0]
        with db.session_scope() as session:
            found = session.scalar(select(Article.url).where(Article.id == target.article_id))
        if found is None:
            return match[0]
        return html.escape(found, quote=True) if escape else found

    return STORY_LINK.sub(url, text) if "/r/" in text else text


PER_READER = ("email", "unsubscribe_url", "preferences_url")


def placeholders() -> dict[str, str]:
    return {name: placeholder(name) for name in PER_READER}


def article(n: int, **overrides: Any) -> dict[str, Any]:
    """An article as the email templates see it."""
    a = {
        "title": f"Ceasefire talks resume in Geneva, day {n}",
        "url": f"https://news.example.com/world/{n}-ceasefire-talks?utm_source=digest&n={n}",
        "summary": (
            "Negotiators met for a third day on Thursday; both delegations said progress had "
            "been made on prisoner exchanges and on humanitarian corridors into the north."
        ),
        "author": "Lina Haddad" if n % 2 else None,
        "published_label": "28 Nov 2026, 09:15",
        "image_url": f"https://cdn.example.com/img/{n}.jpg" if n % 3 == 0 else None,
    }
    a.update(overrides)
    return a


def without_topics(plan: dict) -> dict:
    """A plan's figures but its per-topic ones (the console's, checked where they matter)."""
    return {k: v for k, v in plan.items() if k != "topics"}
