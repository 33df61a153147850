"""/admin/topics in real headless Chromium against a live server: an editor signs in, adds a
topic (after a mistake shown back as typed), adds a tag no topic covered to a topic and makes
a topic of another, sees them offered on /subscribe, edits a topic, retires one through the
page that says whom it affects, and finds each change in the audit log. axe-core checks
every page (no serious or critical violation); phone (390 px) and desktop (1280 px)
screenshots go to the test's temporary directory (and to NEWSLETTER_SCREENSHOTS, if set).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from newsletter.cli import app as cli
from tests.browser import test_console as console_pages
from tests.browser.test_console import Console, htmx_ready
from tests.conftest import ADMIN_TOKEN

# The console's Chromium, axe-core and live-server fixtures.
chromium, axe_source, live = console_pages.chromium, console_pages.axe_source, console_pages.live

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

DESK, DESK_PASSWORD = "desk@news.example", "the desk's long password"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def seed_newsroom(base: str) -> None:
    """Two curated topics, a reader who follows only Energy, and two stories whose tags no
    topic covers yet."""
    for body in ({"name": "Syria", "group": "Middle East", "description": "War and peace."},
                 {"name": "Energy", "group": "Business"}):
        assert httpx.post(f"{base}/api/topics", headers=ADMIN, json=body).status_code == 201
    for n, tag in enumerate(["Damascus", "Aleppo"]):
        r = httpx.post(f"{base}/api/articles", headers=ADMIN, json={
            "url": f"https://news.example/a/{n}", "title": f"News from {tag}", "tags": [tag]})
        assert r.status_code == 201, r.text
    r = httpx.post(f"{base}/api/subscribers", headers=ADMIN, json=[{
        "email": "oil.reader@example.com", "topics": ["energy"],
        "consented_at": "2026-01-01T00:00:00Z"}])
    assert r.json()["created"] == 1, r.text


def offered(desk: Console) -> list[str]:
    desk.goto("/subscribe")
    return desk.page.eval_on_selector_all(
        "input[name=topics]", "boxes => boxes.map(b => b.value)")


def test_an_editor_curates_topics_in_the_console(backend, live, chromium, axe_source,
                                                 tmp_path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    result = CliRunner().invoke(cli, ["editors", "add", DESK, "--role", "editor",
                                      "--password-stdin"], input=DESK_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    seed_newsroom(live)
    assert offered(Console(chromium, live, axe_source, shots, "reader")) == ["syria", "energy"]

    # 1. Signed in, the editor finds Topics in the navigation.
    desk = Console(chromium, live, axe_source, shots, "editor")
    desk.goto("/admin/login")
    desk.sign_in(DESK, DESK_PASSWORD)
    desk.page.get_by_role("navigation", name="Console").get_by_role("link", name="Topics").click()
    assert desk.page.get_by_role("heading", name="Topics", exact=True).is_visible()
    assert desk.page.locator("table.uncovered tbody tr").count() == 2
    desk.check("topics")

    # 2. A topic of a name already taken is refused; what was typed stays.
    desk.page.get_by_label("Name").fill("Syria")
    desk.page.get_by_label("Tags it covers").fill("lebanon, beirut")
    desk.page.get_by_role("button", name="Add topic").click()
    assert "already a topic “Syria”" in desk.page.locator(".error-summary").inner_text()
    assert desk.page.get_by_label("Tags it covers").input_value() == "lebanon, beirut"
    desk.check("topics-error")
    desk.page.get_by_label("Name").fill("Lebanon")
    desk.page.get_by_label("Group").fill("Middle East")
    desk.page.get_by_role("button", name="Add topic").click()
    assert "“Lebanon” was added" in desk.page.get_by_role("status").first.inner_text()

    # 3. The tags no topic covers: Damascus goes to Syria (found by a search), Aleppo
    # becomes a topic of its own in one step.
    desk.page.get_by_label("Find a tag").fill("dam")
    desk.page.get_by_role("button", name="Search").click()
    assert desk.page.locator("table.uncovered tbody tr").count() == 1
    desk.page.get_by_label("Topic to add Damascus to").select_option(label="Syria")
    desk.page.get_by_role("button", name="Add Damascus to the chosen topic").click()
    assert "“Syria” now covers the tag" in desk.page.get_by_role("status").first.inner_text()
    desk.page.get_by_role("link", name="Show all").click()
    desk.page.get_by_role("button", name="Make topic “Aleppo”").click()
    assert "“Aleppo” was made from its tag" in desk.page.get_by_role(
        "status").first.inner_text()
    assert "Every tag is in a topic." in desk.page.content()

    # 4. Edit a topic: its order and the tags it covers.
    desk.page.get_by_role("link", name="Edit Aleppo").click()
    desk.page.get_by_label("Order").fill("-1")
    desk.page.get_by_label("Description").fill("The city and its siege.")
    desk.check("topic-edit")
    desk.page.get_by_role("button", name="Save Aleppo").click()
    assert "“Aleppo” was saved" in desk.page.get_by_role("status").first.inner_text()
    assert offered(desk) == ["aleppo", "syria", "lebanon", "energy"]
    desk.goto("/admin/topics")

    # 5. Retire a topic: the page says whom it affects before anything changes.
    desk.page.get_by_role("link", name="Retire Energy").click()
    assert ("1 reader follows it; 1 follows nothing else and will get nothing until they "
            "choose.") in desk.page.locator("#whom").inner_text()
    desk.check("topic-retire")
    desk.page.get_by_role("button", name="Retire Energy").click()
    assert "“Energy” was retired" in desk.page.get_by_role("status").first.inner_text()
    assert desk.page.get_by_role("button", name="Bring back Energy").is_visible()
    desk.check("topics-curated")
    assert offered(desk) == ["aleppo", "syria", "lebanon"]

    # 6. Every change is in the audit log, the editor named, newest first.
    desk.goto("/admin/audit?action=topic.change")
    rows = desk.audit_rows()
    assert [row.split(" | ")[1:3] for row in rows] == [[DESK, "topic.change"]] * 5 + [
        ["token:ADMIN_TOKEN", "topic.change"]] * 2  # the two topics seeded through the API
    what = [row.split(" | ")[3] for row in rows]
    assert what[0].startswith("topic:energy") and "change: retire" in what[0]
    assert "followers: 1; follow_nothing_else: 1" in what[0]
    assert what[1].startswith("topic:aleppo") and "position: 3 → -1" in what[1]
    assert what[2].startswith("topic:aleppo") and "change: add" in what[2]
    assert what[3].startswith("topic:syria") and "tags added: damascus" in what[3]
    assert what[4].startswith("topic:lebanon") and "change: add" in what[4]
    desk.check("audit-topics")

    # Nothing blocked by the CSP or broken on any page (the 422 of the refused name is a
    # failed resource to Chromium, as asked).
    assert [e for e in desk.errors if "the server responded with a status of 4" not in e] == []
    assert htmx_ready(desk)

    if keep := os.environ.get("NEWSLETTER_SCREENSHOTS"):  # to look at them after the run
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots.iterdir():
            shutil.copy(png, keep)
