"""What editors see, in real headless Chromium under the console's CSP: readers imported,
then some leaving from an edition's unsubscribe page with a reason (and one by the mailbox's
one-click); the dashboard draws topic growth with its table, the edition's page lists why
readers left. axe-core checks both pages; screenshots at 390 px and 1280 px go to
NEWSLETTER_SCREENSHOTS (else the test's temporary directory). Fixtures: conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from newsletter import db, tokens
from newsletter.models import Edition, Reader
from tests.browser.test_browser import DESKTOP, PHONE
from tests.browser.test_console_editions import Editor
from tests.conftest import ADMIN_TOKEN, EDITOR_PASSWORD, add_editor

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TOPICS = ["Syria", "Energy", "Lebanon", "Gulf States", "Diplomacy", "Climate"]


def seed(base: str) -> int:
    """Readers imported with their consent, an edition they got; returns its id."""
    for name in TOPICS:
        assert httpx.post(f"{base}/api/topics", headers=ADMIN, json={"name": name}
                          ).status_code == 201
    follows = [["syria"], ["syria", "energy"], ["energy", "climate"], ["lebanon"],
               ["syria", "lebanon", "diplomacy"], ["gulf-states"], ["syria"], ["climate"],
               ["energy"], ["syria", "gulf-states"]]
    r = httpx.post(f"{base}/api/subscribers", headers=ADMIN, json=[
        {"email": f"reader{n}@example.org", "topics": slugs,
         "consented_at": "2026-01-01T00:00:00Z"} for n, slugs in enumerate(follows)])
    assert r.json()["created"] == len(follows), r.text
    with db.session_scope() as session:
        edition = Edition(frequency="weekly", status="done", source="api")
        session.add(edition)
        session.flush()
        return edition.id


def unsubscribe_url(base: str, email: str, edition_id: int) -> str:
    with db.session_scope() as session:
        reader_id = session.scalar(select(Reader.id).where(Reader.email == email))
    return f"{base}/unsubscribe/{tokens.make('unsubscribe', reader_id, email, e=edition_id)}"


def test_an_editor_sees_topic_growth_and_why_readers_left(backend, live, chromium,
                                                          axe_source, tmp_path) -> None:
    shots = Path(os.environ.get("NEWSLETTER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    edition_id = seed(live)
    add_editor("desk@news.example")

    # Readers leave from the edition's unsubscribe page: two with reasons, one without.
    reader = chromium.new_context(viewport=PHONE).new_page()
    for n, ticks in ((4, ["Too many emails", "Not relevant to me any more"]),
                     (9, ["Too many emails"]), (8, [])):
        reader.goto(unsubscribe_url(live, f"reader{n}@example.org", edition_id))
        for label in ticks:
            reader.get_by_label(label).check()
        reader.get_by_role("button", name="Unsubscribe").click()
        reader.wait_for_load_state()
        assert "unsubscribed" in reader.content().lower()
    one_click = httpx.post(unsubscribe_url(live, "reader1@example.org", edition_id),
                           data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200

    context = chromium.new_context(viewport=PHONE, base_url=live)
    context.add_init_script(path=str(axe_source))  # by the protocol: the CSP is untouched
    editor = Editor(context.new_page(), shots)
    page = editor.page
    page.goto("/admin")
    page.get_by_label("Email address").fill("desk@news.example")
    page.get_by_label("Password").fill(EDITOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin")

    # The dashboard: the chart drawn from the page's figures, the same in the table.
    page.wait_for_function("() => window.Chart && Chart.getChart('topic-growth-chart')")
    chart = page.evaluate("() => { const c = Chart.getChart('topic-growth-chart');"
                          " return [c.data.labels, c.data.datasets.map(d => d.data)]; }")
    labels, (gained, lost) = chart
    # The biggest net growth first (a tie: the most gained first, then by name).
    assert labels == ["Syria", "Climate", "Energy", "Gulf States", "Lebanon", "Diplomacy"]
    by_topic = dict(zip(labels, zip(gained, lost, strict=True), strict=True))
    assert by_topic["Syria"] == (5, -3) and by_topic["Gulf States"] == (2, -1)
    assert page.get_by_text("Opens are not counted, on purpose").is_visible()
    editor.check("dashboard")
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.wait_for_timeout(300)
        page.locator("section.topic-growth").screenshot(
            path=str(shots / f"topic-growth-{label}.png"))

    # The edition's page: who left through it, by reason.
    page.set_viewport_size(PHONE)
    page.goto(f"/admin/editions/{edition_id}")
    rows = page.evaluate("() => [...document.querySelectorAll('.edition-unsubscribes tbody tr')]"
                         ".map(r => [...r.cells].map(c => c.textContent.trim()))")
    assert rows == [["Too many emails", "2"], ["Not relevant to me any more", "1"],
                    ["Gave no reason", "1"], ["One-click (no reason)", "1"]]
    editor.check("edition-unsubscribes")
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.locator("section.edition-unsubscribes").screenshot(
            path=str(shots / f"edition-unsubscribes-{label}.png"))
