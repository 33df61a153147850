"""Readers' time zones in real headless Chromium: the sign-up form's hidden field filled by
our own script under the page's CSP (the browser set to Los Angeles), the preference
centre's select, and the console's edition page showing a scheduled edition's waves.
Screenshots at 390 px and 1280 px go to NEWSLETTER_SCREENSHOTS, else the test's temporary
directory. Fixtures: conftest.py."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from newsletter import db, tokens
from newsletter.config import get_settings
from newsletter.editions import schedule
from newsletter.models import Reader
from tests.browser.test_browser import DESKTOP, PHONE
from tests.conftest import ADMIN_TOKEN, EDITOR_PASSWORD, add_editor
from tests.helpers import add_readers

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def shots_dir(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("NEWSLETTER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def shoot(page, shots: Path, name: str) -> None:
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.screenshot(path=str(shots / f"tz-{name}-{label}.png"), full_page=True)
    page.set_viewport_size(PHONE)


def watch(page) -> list[str]:
    """What the browser refused or failed to run (a CSP violation shows up here)."""
    errors: list[str] = []
    # A failed load is told by its response (with its URL): the browser's own favicon
    # request is no concern of ours.
    page.on("console", lambda m: m.type == "error" and not m.text.startswith(
        "Failed to load resource") and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and not r.url.endswith("/favicon.ico")
            and errors.append(f"{r.status} {r.url}"))
    return errors


def test_the_form_records_the_browsers_zone_and_the_reader_can_change_it(
        backend, live, chromium, tmp_path) -> None:
    shots = shots_dir(tmp_path)
    assert httpx.post(f"{live}/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/1", "title": "Talks resume", "tags": ["Syria"]}
    ).status_code == 201
    assert httpx.post(f"{live}/api/topics", headers=AUTH, json={"name": "Syria"}
                      ).status_code in (200, 201)
    context = chromium.new_context(viewport=PHONE, timezone_id="America/Los_Angeles")
    page = context.new_page()
    errors = watch(page)

    page.goto(f"{live}/subscribe")
    # Our script (static/timezone.js, allowed by script-src 'self') filled the hidden field.
    page.wait_for_function("() => document.querySelector('input[name=timezone]').value")
    assert page.input_value("input[name=timezone]") == "America/Los_Angeles"
    page.fill("#email", "la@example.com")
    page.get_by_label("Syria").check()
    page.get_by_label("Daily digest").check()
    page.get_by_label("I agree to receive").check()
    page.wait_for_timeout(int(get_settings().form_min_seconds * 1000) + 100)
    page.get_by_role("button", name="Sign up").click()
    assert page.get_by_role("heading", name="Check your inbox").is_visible()
    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == "la@example.com"))
        assert reader.timezone == "America/Los_Angeles"
        reader.status = "active"
        token = tokens.make("preferences", reader.id, reader.email)

    page.goto(f"{live}/preferences/{token}")
    assert page.get_by_label("Your time zone").input_value() == "America/Los_Angeles"
    shoot(page, shots, "preferences")
    page.get_by_label("Your time zone").select_option("Asia/Amman")
    page.get_by_role("button", name="Save preferences").click()
    assert page.get_by_role("status").inner_text() == "Your changes are saved."
    assert page.get_by_label("Your time zone").input_value() == "Asia/Amman"
    with db.session_scope() as session:
        assert session.scalar(select(Reader.timezone).where(
            Reader.email == "la@example.com")) == "Asia/Amman"
    assert errors == []


def test_the_console_shows_a_scheduled_editions_waves(backend, live, chromium, axe_source,
                                                       tmp_path) -> None:
    shots = shots_dir(tmp_path)
    assert httpx.post(f"{live}/api/articles", headers=AUTH, json={
        "url": "https://news.example/a/1", "title": "Talks resume", "tags": ["Syria"]}
    ).status_code == 201
    zones = {"amman@example.com": "Asia/Amman", "la@example.com": "America/Los_Angeles",
             "kiritimati@example.com": "Pacific/Kiritimati", "site@example.com": None}
    ids = add_readers({email: ["syria"] for email in zones}, frequency="daily")
    with db.session_scope() as session:
        for email, zone in zones.items():
            session.execute(update(Reader).where(Reader.id == ids[email]).values(timezone=zone))
    add_editor("desk@news.example")
    # Today's period, whatever the hour: a wide grace so a fresh install sends it.
    settings = get_settings().model_copy(update={"schedule_grace_hours": 48.0})
    with db.session_scope() as session:
        [edition] = [e for e in schedule.tick(session, now=datetime.now(UTC),
                                              settings=settings) if e.frequency == "daily"]
        edition_id, requested_at = edition.id, edition.requested_at

    context = chromium.new_context(viewport=PHONE, base_url=live)
    context.add_init_script(path=str(axe_source))
    page = context.new_page()
    errors = watch(page)
    page.goto(f"/admin/editions/{edition_id}")
    page.get_by_label("Email address").fill("desk@news.example")
    page.get_by_label("Password").fill(EDITOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/admin/editions/{edition_id}")
    for _ in range(100):  # the worker plans it: reload until its deliveries are there
        if page.get_by_role("heading", name="Waves").count():
            break
        page.wait_for_timeout(200)
        page.reload()
    table = page.locator("section:has(#waves-heading) tbody tr")
    assert table.count() >= 3  # Kiritimati, Amman, the site (UTC) and LA: at least three
    readers = sum(int(t) for t in table.locator("td[data-label=Readers]").all_inner_texts())
    assert readers == 4
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']}))
        .violations.filter(v => ['serious', 'critical'].includes(v.impact)).map(v => v.id)""")
    assert found == []
    shoot(page, shots, "console-waves")
    assert errors == []
    assert timedelta(0) <= datetime.now(UTC) - requested_at < timedelta(minutes=5)
