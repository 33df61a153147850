"""An editor in real headless Chromium (the console's own CSP, no bypass): sign in, dry-run
then send an edition with an editor's note and watch it finish live, the dashboard's charts,
a preview at phone width and a test send to themselves. axe-core checks every page for
serious or critical violations (the preview's frame aside: it is the email, which has its
own tests); screenshots at 390 px and 1280 px are written for a person to look at
(NEWSLETTER_SCREENSHOTS, else the test's temporary directory). Fixtures: conftest.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest

from tests.browser.test_browser import DESKTOP, PHONE
from tests.conftest import ADMIN_TOKEN, EDITOR_PASSWORD, add_editor
from tests.helpers import add_readers

NOTE = "Polls close at 8 tonight: <b>live results</b> on the site & in tomorrow's digest."

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


class Editor:
    """A signed-in editor's page, with the checks every page gets."""

    def __init__(self, page, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.csp_errors: list[str] = []
        page.on("console", lambda m: self.csp_errors.append(m.text)
                if "Content Security Policy" in m.text else None)
        page.on("pageerror", lambda e: self.csp_errors.append(str(e)))

    def check(self, name: str) -> None:
        """No serious or critical axe violation, nothing the CSP refused; screenshots."""
        found = self.page.evaluate(
            "async () => (await axe.run(document, {iframes: false, resultTypes: ['violations']}))"
            ".violations.filter(v => ['serious', 'critical'].includes(v.impact))"
            ".map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target)}))")
        assert found == [], f"{name}: {json.dumps(found, indent=1)}"
        assert self.csp_errors == [], f"{name}: {self.csp_errors}"
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            self.page.set_viewport_size(size)
            # Chromium paints a sandboxed frame (its own process) only while it is in view,
            # and a full-page shot does not scroll: left in view, it is in the picture.
            # Charts resize on the next animation frame.
            for frame in self.page.locator("iframe").all():
                frame.scroll_into_view_if_needed()
            self.page.wait_for_timeout(300)
            self.page.screenshot(path=str(self.shots / f"{name}-{label}.png"), full_page=True)
        self.page.set_viewport_size(PHONE)


def seed(base: str) -> None:
    for n, (title, tags) in enumerate([("Ceasefire talks resume in Geneva", ["Syria"]),
                                       ("Aid convoy reaches Idlib", ["Syria"]),
                                       ("Gas field output rises", ["Energy"]),
                                       ("Port reopens after strike", ["Lebanon"])]):
        r = httpx.post(f"{base}/api/articles", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                       json={"url": f"https://news.example/a/{n}", "title": title,
                             "summary": f"What happened: {title.lower()}.", "tags": tags})
        assert r.status_code == 201
    add_readers({f"reader{n}@example.org": slugs for n, slugs in enumerate(
        [["syria"], ["energy"], ["syria", "energy"], ["lebanon"], ["syria", "lebanon"]])})
    add_editor("desk@news.example")


def test_an_editor_sends_an_edition_and_previews_a_digest(backend, live, chromium, axe_source,
                                                         tmp_path) -> None:
    shots = Path(os.environ.get("NEWSLETTER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    seed(live)
    context = chromium.new_context(viewport=PHONE, base_url=live)
    context.add_init_script(path=str(axe_source))  # by the protocol: the CSP is untouched
    editor = Editor(context.new_page(), shots)
    page = editor.page

    # Signed out, the console asks to sign in and comes back to the page asked for.
    page.goto("/admin/editions/new")
    page.get_by_label("Email address").fill("desk@news.example")
    page.get_by_label("Password").fill(EDITOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/admin/editions/new")
    assert page.get_by_role("heading", name="Next scheduled editions").is_visible()

    # 1. The dry run: its figures appear by themselves, then the send button.
    page.get_by_label("Weekly").check()
    page.get_by_label("Editor's note").fill(NOTE)
    page.get_by_role("button", name="Dry run").click()
    send = page.get_by_role("button", name=re.compile(r"Send it: 5 emails"))
    send.wait_for(timeout=60_000)
    assert "Nothing was sent" in page.locator("#dry-run").inner_text()
    assert backend.smtp.messages() == []
    editor.check("dry-run")

    # 2. Send, and watch it finish without reloading.
    send.click()
    page.wait_for_url(re.compile(r".*/admin/editions/\d+$"))
    page.locator("#edition-progress .status-done").wait_for(timeout=90_000)
    assert len(backend.smtp.wait_for(5)) == 5
    assert "Sent\n5" in page.locator("#edition-progress").inner_text()
    # Per topic and the sample refresh every 10 s while it sends, then stop.
    page.locator("#edition-contents .sample").first.wait_for(timeout=30_000)
    page.wait_for_function("() => !document.querySelector('#edition-contents[hx-trigger]')",
                           timeout=30_000)
    rows = page.evaluate("() => [...document.querySelectorAll('#edition-contents tbody tr')]"
                         ".map(r => [...r.cells].map(c => c.textContent.trim()))")
    assert ["Syria", "2", "3"] in rows
    assert page.get_by_text(NOTE).is_visible()
    for message in backend.smtp.messages():
        assert NOTE in " ".join(message.get_body(("plain",)).get_content().split())
    editor.check("edition")

    # 3. The dashboard: nothing in progress now, readers, the charts drawn.
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_function("() => window.Chart && Chart.getChart('trend-chart')"
                           " && Chart.getChart('editions-chart')")
    assert page.get_by_text("No edition is being planned or sent right now").is_visible()
    editor.check("dashboard")
    page.get_by_role("link", name="Editions", exact=True).click()
    editor.check("editions")

    # 4. A reader's next digest at phone width, then a test send to me.
    page.get_by_role("link", name="Preview").click()
    page.get_by_label("A reader's email address").fill("nobody@example.org")
    page.get_by_role("button", name="Show the preview").click()
    assert page.get_by_role("alert").filter(has_text="No reader with the address").is_visible()
    assert page.get_by_label("A reader's email address").input_value() == "nobody@example.org"
    page.get_by_label("A reader's email address").fill("")
    page.get_by_label("Syria").check()
    page.get_by_label("Energy").check()
    page.get_by_role("button", name="Show the preview").click()
    frame = page.frame_locator("iframe.email-frame")
    frame.get_by_text("Gas field output rises").first.wait_for()
    page.get_by_role("link", name="Phone").click()
    frame = page.frame_locator("iframe.email-frame")
    frame.get_by_text("Ceasefire talks resume in Geneva").first.wait_for()
    assert page.locator("iframe.email-frame").bounding_box()["width"] <= 375
    assert "Aid convoy reaches Idlib" in page.locator(".text-part pre").inner_text()
    editor.check("preview")
    backend.smtp.clear()
    page.get_by_role("button", name=re.compile("Test-send to me")).click()
    assert page.get_by_role("status").filter(has_text="is on its way to desk@news.example") \
        .is_visible()
    [test] = backend.smtp.wait_for(1)
    assert test["To"] == "desk@news.example" and test["Subject"].startswith("[TEST] ")
    editor.check("preview-sent")
    context.close()
