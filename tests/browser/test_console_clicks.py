"""An editor sees what an edition's story links did, in real headless Chromium: readers follow
the links of a sent digest on the live server, then the edition page shows clicks per story
and per topic (table and chart) and the dashboard the week's top stories (chart and table).
axe-core and the CSP as for every console page; screenshots for a person to look at
(NEWSLETTER_SCREENSHOTS, else the test's temporary directory)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.browser.test_browser import DESKTOP, PHONE
from tests.browser.test_console_editions import Editor, seed
from tests.conftest import ADMIN_TOKEN, EDITOR_PASSWORD
from tests.helpers import html_part, wait_done

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) " \
          "Chrome/120.0 Safari/537.36"
LINK = re.compile(r"https://news\.example(/r/[A-Za-z0-9_\-.]+)")


def test_an_editor_sees_the_clicks_of_an_edition_and_the_weeks_top_stories(
        backend, live, chromium, axe_source, tmp_path) -> None:
    shots = Path(os.environ.get("NEWSLETTER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    seed(live)
    r = httpx.post(f"{live}/api/editions", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                   json={"frequency": "weekly"})
    edition_id = r.json()["id"]
    assert wait_done(edition_id)["status"] == "done"
    # Readers follow their story links: some stories more than others.
    clicks = 0
    with httpx.Client(base_url=live, headers={"User-Agent": BROWSER}) as client:
        for n, message in enumerate(backend.smtp.wait_for(5)):
            for link in LINK.findall(html_part(message, raw=True))[: n % 3 + 1]:
                assert client.get(link, follow_redirects=False).status_code == 302
                clicks += 1
    time.sleep(2.5)  # the app writes its counts every second

    context = chromium.new_context(viewport=PHONE, base_url=live)
    context.add_init_script(path=str(axe_source))
    editor = Editor(context.new_page(), shots)
    page = editor.page
    page.goto(f"/admin/editions/{edition_id}")
    page.get_by_label("Email address").fill("desk@news.example")
    page.get_by_label("Password").fill(EDITOR_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**/admin/editions/{edition_id}")
    section = page.locator("section.clicks")
    assert f"Clicks per story ({clicks} in all)" in section.inner_text()
    assert "never per reader" in section.inner_text()
    assert "Privacy Protection" in section.inner_text()
    page.wait_for_function("() => window.Chart && Chart.getChart('edition-clicks-chart')")
    editor.check("edition-clicks")
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.wait_for_timeout(400)
        section.screenshot(path=str(shots / f"edition-clicks-section-{label}.png"))

    page.set_viewport_size(PHONE)
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_function("() => window.Chart && Chart.getChart('top-stories-chart')"
                           " && Chart.getChart('trend-chart')")
    top = page.locator("section", has=page.get_by_role("heading", name="Top stories of the week"))
    rows = top.locator("tbody tr").all_inner_texts()
    assert rows and sum(int(r.split()[-1]) for r in rows) == clicks
    editor.check("dashboard-top-stories")
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.wait_for_timeout(400)
        top.screenshot(path=str(shots / f"dashboard-top-stories-{label}.png"))
