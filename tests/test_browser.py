"""A reader's whole journey in real headless Chromium against a live server and worker.

Screenshots (phone and desktop widths) go to the test's temporary directory for a person
to look at; they are not committed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from newsletter import db
from newsletter.models import ConsentEvent, Reader
from tests.conftest import ADMIN_TOKEN, REQUIRE_SERVERS, live_web

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


@pytest.fixture
def live_server(fresh, tmp_path) -> str:
    with live_web(tmp_path / "web.log") as base:
        yield base


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        if REQUIRE_SERVERS:
            pytest.fail("Chromium is not installed (apt-get install chromium)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


def path_of(url: str) -> str:
    """Links in emails name the configured public site; open them on the live server."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def link_in(message, pattern: str) -> str:
    text = message.get_body(("plain",)).get_content()
    return path_of(re.search(pattern, text).group(0))


def test_a_readers_journey(backend, live_server, browser, tmp_path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    for n, tags in enumerate([["Syria", "Russia"], ["Jordan", "Energy"], ["Lebanon", "Gulf"]]):
        r = httpx.post(f"{live_server}/api/articles", json={
            "url": f"https://news.example/a/{n}", "title": f"Story {n}", "tags": tags},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 201
        for name in tags:  # what the editors offer readers
            assert httpx.post(f"{live_server}/api/topics", json={"name": name},
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
                              ).status_code in (200, 201)

    page = browser.new_page(viewport=PHONE)

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}-phone.png"), full_page=True)
        page.set_viewport_size(DESKTOP)
        page.screenshot(path=str(shots / f"{name}-desktop.png"), full_page=True)
        page.set_viewport_size(PHONE)

    # 1. The form, submitted with mistakes: the errors say what to fix and keep the input.
    page.goto(f"{live_server}/subscribe")
    assert page.locator("html").get_attribute("lang") == "en"
    shot("1-form")
    page.fill("#email", "reader@example")
    page.get_by_label("Daily digest").check()
    page.get_by_role("button", name="Sign up").click()
    assert page.locator(".error-summary").is_visible()
    summary = page.locator(".error-summary").inner_text()
    assert "valid email address" in summary and "at least one topic" in summary
    assert "tick the box" in summary
    assert page.input_value("#email") == "reader@example"
    assert page.get_by_label("Daily digest").is_checked()
    shot("2-errors")

    # 2. Fixed and sent.
    page.fill("#email", "reader@example.com")
    page.get_by_label("Syria").check()
    page.get_by_label("Jordan").check()
    page.get_by_label("I agree to receive").check()
    page.get_by_role("button", name="Sign up").click()
    assert page.get_by_role("heading", name="Check your inbox").is_visible()
    shot("3-check-inbox")

    # 3. The confirmation link from the email the worker sent to the SMTP server.
    [confirm_mail] = backend.smtp.wait_for(1)
    assert str(confirm_mail["To"]) == "reader@example.com"
    page.goto(live_server + link_in(confirm_mail, r"https?://\S+/confirm/\S+"))
    shot("4-confirm")
    page.get_by_role("button", name="Confirm my subscription").click()
    assert page.get_by_role("heading", name="You're subscribed").is_visible()

    # 4. Preferences: swap a topic, go weekly.
    page.get_by_role("link", name="Choose topics and frequency").click()
    assert page.get_by_label("Syria").is_checked() and page.get_by_label("Jordan").is_checked()
    page.get_by_label("Jordan").uncheck()
    page.get_by_label("Energy").check()
    page.get_by_label("Weekly digest").check()
    page.get_by_role("button", name="Save preferences").click()
    assert page.get_by_role("status").inner_text() == "Your changes are saved."
    assert page.locator(".history tbody tr").count() == 3  # requested, confirmed, changed
    shot("5-preferences")
    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == "reader@example.com"))
        assert (reader.status, reader.frequency) == ("active", "weekly")
        assert sorted(t.slug for t in reader.topics) == ["energy", "syria"]

    # 5. Unsubscribe with a reason, from the link in the welcome email.
    welcome = backend.smtp.wait_for(2)[1]
    assert welcome["Subject"].startswith("Welcome")
    page.goto(live_server + link_in(welcome, r"https?://\S+/unsubscribe/\S+"))
    shot("6-unsubscribe")
    page.get_by_label("Too many emails").check()
    page.fill("#reason-other", "Back after the holidays")
    page.get_by_role("button", name="Unsubscribe").click()
    assert page.get_by_role("heading", name="You're unsubscribed").is_visible()
    shot("7-unsubscribed")
    with db.session_scope() as session:
        assert session.get(Reader, reader.id).status == "unsubscribed"
        withdrawn = session.scalars(select(ConsentEvent).where(
            ConsentEvent.reader_id == reader.id, ConsentEvent.action == "withdrawn")).one()
        assert withdrawn.details == {"reason": "Too many emails; Back after the holidays"}

    # 6. Resubscribe: by a link emailed to the address (the unsubscribe link may have been
    # forwarded), and consent is asked for again.
    page.get_by_role("button", name="Email me a link to subscribe again").click()
    assert page.get_by_role("heading", name="We've emailed you a link").is_visible()
    with db.session_scope() as session:
        assert session.get(Reader, reader.id).status == "unsubscribed"
    data_mail = backend.smtp.wait_for(3)[2]
    assert str(data_mail["To"]) == "reader@example.com"
    page.goto(live_server + link_in(data_mail, r"https?://\S+/my-data/\S+"))
    page.get_by_role("button", name="Resubscribe").click()
    assert "tick the box" in page.locator(".error-summary").inner_text()
    page.get_by_label("I agree to receive").check()
    page.get_by_role("button", name="Resubscribe").click()
    assert page.get_by_role("heading", name="Welcome back").is_visible()
    with db.session_scope() as session:
        assert session.get(Reader, reader.id).status == "active"
    if keep := os.environ.get("NEWSLETTER_SCREENSHOTS"):  # to look at them after the run
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots.iterdir():
            shutil.copy(png, keep)
