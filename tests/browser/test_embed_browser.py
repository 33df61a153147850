"""Issue 19, item 1, in real headless Chromium: a news site's article page, served from
another origin (127.0.0.2, another port), frames the sign-up box with the snippet the console
shows. Listed in EMBED_ORIGINS, the box loads, fits its frame (embed.js), takes a sign-up
whose answer shows inside it, and the confirmation email that reaches the real SMTP server
confirms the reader. A page on an origin not listed gets nothing: Chromium refuses the frame.

Screenshots of the article page at phone width (390 px), before and after the sign-up, go to
the test's temporary directory (and to NEWSLETTER_SCREENSHOTS, if set).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from newsletter import db
from newsletter.config import reload_settings
from newsletter.mail.capture import free_port
from newsletter.models import Reader
from newsletter.web.embed import snippet
from tests.browser.test_browser import DESKTOP, PHONE
from tests.conftest import live_web, offer_topics
from tests.web.test_embed import mail_to

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)

# The news site: another address on the loopback network, so another origin than the
# newsletter's 127.0.0.1 whatever the ports.
SITE_HOST = "127.0.0.2"


@contextmanager
def news_site(html: str) -> Iterator[str]:
    """An article page on its own origin (a plain HTTP server); yields that origin."""
    body = html.encode()

    class Article(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((SITE_HOST, 0), Article)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{SITE_HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def article_page(code: str) -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Talks in Moscow</title>
<style>body{{font:17px/1.5 Georgia,serif;margin:0 auto;max-width:40rem;padding:16px}}
h1{{font-size:26px;line-height:1.2}}</style></head><body>
<p><strong>The Levant Ledger</strong> · Syria</p>
<h1>Damascus and Moscow talk about the ports</h1>
<p>Syrian and Russian officials met for a second day on Tuesday to discuss the future of
the naval base at Tartus and the airfield at Hmeimim.</p>
<p>Neither side gave details after the meeting.</p>
<h2>Get the next story by email</h2>
{code}
<p>More from the Middle East desk.</p>
</body></html>"""


@pytest.fixture
def newsletter_origin(fresh, tmp_path, monkeypatch) -> Iterator[tuple[str, str, str]]:
    """The newsletter on 127.0.0.1 (BASE_URL its own origin, as in production) and the two
    news sites: one listed in EMBED_ORIGINS, one not. Yields (ours, listed, unlisted)."""
    with db.session_scope() as session:
        offer_topics(session, "Syria", "Russia", "Jordan", "Lebanon")
    port = free_port("127.0.0.1")
    ours = f"http://127.0.0.1:{port}"
    # The snippet as the console shows it, for the newsletter at this address.
    monkeypatch.setenv("NEWSLETTER_BASE_URL", ours)
    reload_settings()
    try:
        page = article_page(snippet(["syria", "russia"]))
        with news_site(page) as listed, news_site(page) as unlisted, \
                live_web(tmp_path / "web.log", port=port, NEWSLETTER_EMBED_ORIGINS=listed):
            yield ours, listed, unlisted
    finally:
        monkeypatch.undo()
        reload_settings()


def frame_height(page) -> float:
    return page.locator("iframe").bounding_box()["height"]


def box_height(frame) -> float:
    return frame.evaluate("document.querySelector('.embed-box').getBoundingClientRect().height")


def fitted(page, frame) -> bool:
    return abs(frame_height(page) - box_height(frame)) <= 1


def wait_fitted(page, frame) -> None:
    for _ in range(50):
        if fitted(page, frame):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"frame {frame_height(page)} px, box {box_height(frame)} px")


def test_a_news_site_frames_the_box_and_a_reader_signs_up_in_it(
        newsletter_origin, backend, browser, tmp_path) -> None:
    ours, listed, unlisted = newsletter_origin
    shots = tmp_path / "screenshots"
    shots.mkdir()
    # A reader in Amman: the box sends the browser's time zone with the form.
    context = browser.new_context(viewport=PHONE, timezone_id="Asia/Amman")
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda m: m.type == "error" and refused.append(m.text))
    posted: list[str] = []
    page.on("request", lambda r: r.method == "POST" and posted.append(r.post_data or ""))

    # 1. The listed site: the box loads inside the article, the article's topics ticked.
    assert page.goto(listed + "/").status == 200
    box = page.frame_locator("iframe")
    box.get_by_role("button", name="Sign up").wait_for()
    frame = page.frames[1]
    assert frame.url == f"{ours}/embed/subscribe?topics=syria,russia"
    assert box.get_by_label("Syria").is_checked() and box.get_by_label("Russia").is_checked()
    assert not box.get_by_label("Jordan").is_visible()  # folded under "More topics"
    frame.wait_for_function("document.querySelector('input[name=timezone]').value !== ''")
    assert frame.input_value("input[name=timezone]") == "Asia/Amman"
    assert not [m for m in refused if "Content Security Policy" in m], refused
    # embed.js fitted the frame (640 px in the snippet) to the box.
    wait_fitted(page, frame)
    first = frame_height(page)
    assert first != 640
    # Unfolding the other topics makes the box taller: the frame follows.
    box.get_by_text("More topics").click()
    wait_fitted(page, frame)
    assert frame_height(page) > first
    box.get_by_text("More topics").click()
    wait_fitted(page, frame)
    assert frame_height(page) == first
    # The article goes on right under the box: no scrollbar inside, no gap below.
    below = page.get_by_text("More from the Middle East desk").bounding_box()["y"]
    frame_box = page.locator("iframe").bounding_box()
    assert 0 <= below - (frame_box["y"] + frame_box["height"]) < 40, (below, frame_box)
    page.screenshot(path=str(shots / "1-article-with-box-phone.png"), full_page=True)
    page.set_viewport_size(DESKTOP)  # wider, the box is shorter: the frame follows again
    wait_fitted(page, frame)
    assert frame_height(page) < first
    page.screenshot(path=str(shots / "1-article-with-box-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    wait_fitted(page, frame)

    # 2. A sign-up in the box: the answer shows inside it, and the frame shrinks to it.
    box.get_by_role("textbox", name="Email address").fill("amman.reader@example.com")
    box.get_by_label("Daily digest").check()
    box.get_by_label("I agree to receive").check()
    box.get_by_role("button", name="Sign up").click()
    box.get_by_role("heading", name="Check your inbox").wait_for()
    assert page.url == listed + "/"  # the reader stayed on the article
    wait_fitted(page, frame)
    assert frame_height(page) < first
    page.screenshot(path=str(shots / "2-article-after-sign-up-phone.png"), full_page=True)
    [form] = [p for p in posted if "form_token=" in p]
    assert "timezone=Asia%2FAmman" in form
    assert "topics=syria" in form and "topics=russia" in form

    # 3. The confirmation email, through the worker to the SMTP server: its link confirms.
    mail = mail_to(backend.smtp, "amman.reader@example.com")
    link = re.search(r"https?://\S+/confirm/\S+", mail.get_body(("plain",)).get_content())
    # The worker's BASE_URL names the public site (https://news.example): open the link's
    # path on the live server, as the reader's browser would at the public address.
    reader_page = context.new_page()
    reader_page.goto(ours + urlsplit(link.group(0)).path)
    reader_page.get_by_role("button", name="Confirm my subscription").click()
    assert reader_page.get_by_role("heading", name="You're subscribed").is_visible()
    with db.session_scope() as session:
        reader = session.scalar(select(Reader).where(Reader.email == "amman.reader@example.com"))
        assert (reader.status, reader.frequency, reader.source) == ("active", "daily", "embed")
        assert sorted(t.slug for t in reader.topics) == ["russia", "syria"]

    # 4. A site not listed in EMBED_ORIGINS: Chromium refuses to show the box at all.
    other = context.new_page()
    other.goto(unlisted + "/")
    other.wait_for_timeout(1500)
    framed = other.frames[1]
    assert framed.url.startswith("chrome-error://"), framed.url  # refused, not loaded
    assert "<form" not in framed.content() and "Sign up" not in framed.content()
    other.screenshot(path=str(shots / "3-unlisted-site-refused-phone.png"), full_page=True)
    context.close()
    if keep := os.environ.get("NEWSLETTER_SCREENSHOTS"):  # to look at them after the run
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots.iterdir():
            shutil.copy(png, keep)


# ---------------------------------------------------------------- the console's snippet

def test_an_editor_copies_the_snippet_for_an_articles_topics(fresh, chromium, axe_source,
                                                             tmp_path) -> None:
    from tests.browser.test_console import Console
    from tests.conftest import EDITOR_PASSWORD, add_editor

    with db.session_scope() as session:
        offer_topics(session, "Syria", "Russia", "Jordan")
    add_editor("desk@news.example")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with live_web(tmp_path / "web.log", NEWSLETTER_BASE_URL="http://127.0.0.1") as base:
        desk = Console(chromium, base, axe_source, shots, "editor")
        desk.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        missing: list[str] = []
        desk.page.on("response", lambda r: r.status >= 400 and missing.append(r.url))
        desk.goto("/admin/login")
        desk.sign_in("desk@news.example", EDITOR_PASSWORD)
        desk.goto("/admin/topics")
        form = desk.page.get_by_role("form", name="Sign-up box for article pages")
        form.get_by_label("Syria").check()
        form.get_by_label("Russia").check()
        form.get_by_role("button", name="Make the snippet").click()
        code = desk.page.get_by_label("Paste this into the article page").input_value()
        assert code == snippet_for("http://127.0.0.1", "syria,russia")
        desk.page.get_by_role("button", name="Copy the snippet").click()  # shown by copy.js
        assert desk.page.get_by_role("status").filter(has_text="Copied.").is_visible()
        assert desk.page.evaluate("navigator.clipboard.readText()") == code
        desk.check("topics-box-snippet")
        desk.goto("/admin/topics/jordan")
        assert desk.page.get_by_label("Paste this into the article page").input_value() == (
            snippet_for("http://127.0.0.1", "jordan"))
        desk.check("topic-box-snippet")
        # No script or style refused by the console's policy, none of ours missing (the
        # browser's own favicon request is the 404 it logs).
        assert [e for e in desk.errors if "status of 404" not in e] == []
        assert [url for url in missing if "/static/" in url] == []
    if keep := os.environ.get("NEWSLETTER_SCREENSHOTS"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots.iterdir():
            shutil.copy(png, keep)


def snippet_for(base: str, topics: str) -> str:
    return (f'<iframe src="{base}/embed/subscribe?topics={topics}" title="Newsletter sign-up" '
            'width="100%" height="640" style="border:0;max-width:32rem"></iframe>\n'
            f'<script src="{base}/embed.js" async></script>')
