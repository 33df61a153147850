"""The console's newsroom and readers pages in real headless Chromium against a live server
and a real worker: an article published through the API is found and unpublished; a reader
is found by address, their ledger read, and erased by an admin (an editor gets 403); a CSV
import runs while the page follows it; a suppression is lifted with a reason. axe-core
checks every page; screenshots at phone and desktop width (the sign-in, axe and screenshot
machinery is the console's own browser test's)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter import db
from newsletter.cli import app as cli
from newsletter.models import Reader, Suppression
from newsletter.readers import consent
from tests.browser.test_console import Console, axe_source, chromium  # noqa: F401 - fixtures
from tests.conftest import ADMIN_TOKEN, live_web

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

CHIEF, DESK = "chief@news.example", "desk@news.example"
PASSWORD = "a long console password"
API = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FEEDS = "tests/data/feed.rss World"


@pytest.fixture
def live(fresh, tmp_path):
    with live_web(tmp_path / "web.log", NEWSLETTER_BASE_URL="http://127.0.0.1",
                  NEWSLETTER_FEEDS=FEEDS) as base:
        yield base


def seed(base: str) -> None:
    for email, role in ((CHIEF, "admin"), (DESK, "editor")):
        result = CliRunner().invoke(cli, ["editors", "add", email, "--role", role,
                                          "--password-stdin"], input=PASSWORD + "\n")
        assert result.exit_code == 0, result.output
    for i, title in enumerate(["Ceasefire holds in the north", "Grain corridor reopens"]):
        r = httpx.post(f"{base}/api/articles", headers=API, json={
            "url": f"https://news.example/a/{i}", "title": title, "summary": "3 ships left",
            "tags": ["Syria", "Jordan"]})
        assert r.status_code == 201, r.text
    r = httpx.post(f"{base}/api/articles", headers=API, json={
        "url": "https://news.example/a/1", "title": "Grain corridor reopens for 30 ships",
        "summary": "30 ships left", "tags": ["Syria", "Jordan"]})
    assert r.status_code == 200
    httpx.post(f"{base}/api/topics", headers=API, json={"name": "Syria"})  # offered to readers
    r = httpx.post(f"{base}/api/subscribers", headers=API, json=[
        {"email": e, "topics": ["syria"], "consented_at": "2026-01-01T00:00:00Z"}
        for e in ("leaving.reader@example.com", "lena@example.org", "natalie@example.net")])
    assert r.json()["created"] == 3, r.text
    with db.session_scope() as session:
        consent.suppress(session, "full.mailbox@example.org", "bounce")


def reader_exists(email: str) -> bool:
    with db.session_scope() as session:
        return session.scalar(select(Reader.id).where(Reader.email == email)) is not None


def test_the_newsroom_and_readers_pages(backend, live, chromium, axe_source,  # noqa: F811
                                        tmp_path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    seed(live)
    chief = Console(chromium, live, axe_source, shots, "admin")
    chief.goto("/admin/articles")
    chief.sign_in(CHIEF, PASSWORD)
    page = chief.page
    assert page.url == f"{live}/admin/articles"

    # 1. The article published through the API, its correction and its unpublishing.
    page.get_by_label("Words in the headline").fill("grain")
    page.get_by_role("button", name="Search").click()
    assert page.locator("table.list tbody tr").count() == 1
    chief.check("articles")
    page.get_by_role("link", name="Grain corridor reopens for 30 ships").click()
    assert page.get_by_text("correction", exact=True).count() >= 1
    chief.check("article")
    page.get_by_role("link", name="Unpublish…").click()
    chief.check("article-unpublish")
    page.get_by_role("button", name="Unpublish this article").click()
    assert "Unpublished" in page.get_by_role("status").inner_text()
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Articles").click()
    page.get_by_label("Status").select_option("unpublished")
    page.get_by_role("button", name="Search").click()
    assert page.locator("table.list tbody tr").count() == 1

    # 2. A reader found by the start of the address; their ledger; erased after confirming.
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Readers").click()
    page.get_by_label("Address starts with").fill("le")
    page.get_by_role("button", name="Find").click()
    assert page.locator("table.list tbody tr").count() == 2  # not natalie@
    chief.check("readers")
    page.get_by_role("link", name="leaving.reader@example.com").click()
    ledger = page.locator("table.list").inner_text()
    assert "confirmed" in ledger and "import" in ledger
    chief.check("reader")
    reader_url = page.url
    page.get_by_role("link", name="Erase…").click()
    chief.check("reader-erase")
    assert reader_exists("leaving.reader@example.com")

    # The editor cannot see readers, nor erase one with their own session's CSRF token.
    desk = Console(chromium, live, axe_source, shots, "editor")
    desk.goto("/admin/login")
    desk.sign_in(DESK, PASSWORD)
    assert desk.page.get_by_role("link", name="Readers").count() == 0
    assert desk.goto(reader_url.removeprefix(live)).status == 403
    token = desk.page.locator('meta[name="csrf-token"]').get_attribute("content")
    r = desk.context.request.post(f"{reader_url}/erase", form={"csrf_token": token})
    assert r.status == 403 and reader_exists("leaving.reader@example.com")
    desk.goto("/admin/deliverability")
    desk.check("deliverability")

    page.get_by_role("button", name="Erase this reader").click()
    assert "erased" in page.get_by_role("status").inner_text()
    assert not reader_exists("leaving.reader@example.com")

    # 3. A CSV import: the page follows the worker until it is done.
    page.get_by_role("link", name="Import readers from a CSV file").click()
    page.get_by_role("button", name="Import").click()  # no file: the browser asks for one
    assert page.url.endswith("/admin/readers/import")
    page.get_by_label("CSV file").set_input_files("tests/data/subscribers.csv")
    page.get_by_role("button", name="Import").click()
    page.get_by_text("Done:").wait_for(timeout=30_000)
    assert "not a valid email address" in page.locator("#progress").inner_text()
    chief.check("import-done")
    assert reader_exists("hala.nasser@example.com")

    # 4. Feeds and deliverability; a suppression lifted, with its reason asked first.
    with db.session_scope() as session:
        from newsletter.config import reload_settings
        from newsletter.newsroom import feeds

        os.environ["NEWSLETTER_FEEDS"] = FEEDS
        reload_settings()
        try:
            feeds.poll(session)
        finally:
            del os.environ["NEWSLETTER_FEEDS"]
            reload_settings()
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Feeds").click()
    assert "tests/data/feed.rss" in page.locator("table.list").inner_text()
    chief.check("feeds")
    page.get_by_role("navigation", name="Console").get_by_role(
        "link", name="Deliverability").click()
    page.get_by_role("link", name="The suppression list").click()
    page.get_by_label("Whole address").fill("Full.Mailbox@example.org")
    page.get_by_role("button", name="Search").click()
    chief.check("suppressions")
    page.get_by_role("link", name="Remove this entry…").click()
    page.evaluate("document.querySelector('#why').removeAttribute('required')")
    page.get_by_role("button", name="Remove entry").click()
    assert "Say why" in page.locator(".error-summary").inner_text()
    chief.check("suppression-remove-error")
    page.get_by_label("Why may it be mailed again?").fill("the mailbox was full; reader phoned")
    page.get_by_role("button", name="Remove entry").click()
    assert "removed" in page.get_by_role("status").inner_text()
    with db.session_scope() as session:
        assert session.scalar(select(Suppression.id)) is not None  # the erased reader's
        assert not consent.is_suppressed(session, "full.mailbox@example.org")
    chief.goto("/admin/audit")
    actions = [a for a in (row.split(" | ")[2] for row in chief.audit_rows())
               if a != "editor.sign_in"][:4]
    assert actions == ["suppression.remove", "readers.import", "reader.erase",
                       "article.unpublish"]

    if keep := os.environ.get("NEWSLETTER_SCREENSHOTS"):  # to look at them after the run
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots.iterdir():
            shutil.copy(png, keep)
