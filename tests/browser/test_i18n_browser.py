"""An Arabic sign-up in real headless Chromium against a live server and worker: the form in
Arabic and right to left, the confirmation email (captured by the real SMTP server) in Arabic
with a mirrored layout, rendered in Chromium at phone width, and its link confirming.

What is checked in the browser, not only in the markup: where things land on a 390 px
screen (text and buttons on the right, the email address and English names not reordered).
Screenshots go to the test's temporary directory, or to NEWSLETTER_SCREENSHOTS.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from newsletter import db
from newsletter.models import Reader, Topic
from tests.browser.test_browser import PHONE, link_in
from tests.conftest import ADMIN_TOKEN, live_web

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
RLM = "\u200f"


@pytest.fixture
def live_server(fresh, tmp_path) -> str:
    with live_web(tmp_path / "web.log") as base:
        yield base


def _offer(base: str) -> None:
    for name in ("Syria", "Russia"):
        assert httpx.post(f"{base}/api/topics", json={"name": name},
                          headers=AUTH).status_code == 201
    with db.session_scope() as session:  # the console's "Name in other languages"
        session.scalar(select(Topic).where(Topic.slug == "syria")).names = {"ar": "سوريا"}
        session.commit()


def _box(page, selector: str) -> dict:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return box


def _right_aligned(page, selector: str) -> None:
    """The element's text starts at the right: its last line's end touches the right edge
    of its box, not the left (a short line shows it: measured with a Range)."""
    edges = page.locator(selector).first.evaluate("""el => {
        const r = document.createRange(); r.selectNodeContents(el);
        const rects = [...r.getClientRects()]; const box = el.getBoundingClientRect();
        const pad = parseFloat(getComputedStyle(el).paddingRight) || 0;
        return {textRight: Math.max(...rects.map(x => x.right)),
                textLeft: Math.min(...rects.map(x => x.left)),
                boxRight: box.right - pad, boxLeft: box.left};
    }""")
    assert abs(edges["textRight"] - edges["boxRight"]) < 3, (selector, edges)
    assert edges["textLeft"] - edges["boxLeft"] > -1, (selector, edges)


def test_an_arabic_sign_up_gets_a_right_to_left_confirmation(backend, live_server, browser,
                                                             tmp_path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    _offer(live_server)
    page = browser.new_page(viewport=PHONE, locale="ar-JO",
                            extra_http_headers={"Accept-Language": "ar-JO,ar;q=0.9,en;q=0.5"})

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"ar-{name}-phone.png"), full_page=True)

    # 1. The form, chosen by the browser's language: Arabic, right to left, mirrored.
    page.goto(f"{live_server}/subscribe")
    html = page.locator("html")
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == ("ar", "rtl")
    assert page.get_by_role("heading", level=1).inner_text() == \
        "القصص التي تتابعها، في بريدك الوارد"
    _right_aligned(page, "h1")
    width = PHONE["width"]
    button = _box(page, "button[type=submit]")
    assert button["x"] + button["width"] > width - 40  # the button sits on the right
    check = _box(page, "input[value=syria]")
    label = _box(page, "label.check:has(input[value=syria]) span")
    assert check["x"] > label["x"]  # the box is right of its label, as Arabic reads
    assert page.locator("#email").get_attribute("dir") == "auto"
    shot("1-form")

    # The switcher offers English; back to Arabic keeps the page the same.
    assert page.get_by_role("link", name="English").get_attribute("href") == "/subscribe?lang=en"

    # 2. Mistakes are explained in Arabic; then the form is sent.
    page.get_by_role("button", name="اشترك").click()
    summary = page.locator(".error-summary").inner_text()
    assert "يُرجى إدخال عنوان بريد إلكتروني صحيح." in summary
    assert "اختر موضوعًا واحدًا على الأقل." in summary
    assert page.locator("html").get_attribute("dir") == "rtl"  # the post kept ?lang
    shot("2-errors")
    page.fill("#email", "reader.ar@example.com")
    page.get_by_label("سوريا").check()
    page.get_by_label("Russia").check()
    page.get_by_label("نشرة يومية").check()
    page.get_by_label("أوافق على تلقي النشرات").check()
    page.get_by_role("button", name="اشترك").click()
    assert page.get_by_role("heading", name="تفقّد بريدك الوارد").is_visible()
    shot("3-check-inbox")
    with db.session_scope() as session:
        assert session.scalar(select(Reader.locale).where(
            Reader.email == "reader.ar@example.com")) == "ar"

    # 3. The confirmation, as the worker sent it to the SMTP server: Arabic, and rtl on the
    # document, its tables and every cell (dir and align, for clients that drop CSS).
    [mail] = backend.smtp.wait_for(1)
    assert str(mail["Subject"]) == "أكّد اشتراكك في The Levant Ledger"
    body = mail.get_body(("html",)).get_content()
    assert '<html lang="ar" dir="rtl">' in body
    cells = re.findall(r"<td class=\"(masthead|content|footer|button-cell|browser-bar)\"[^>]*>",
                       body)
    assert {"masthead", "content", "footer", "button-cell", "browser-bar"} <= set(cells)
    for tag in re.findall(r"<td class=\"(?:masthead|content|footer|button-cell)\"[^>]*>", body):
        assert 'dir="rtl"' in tag and 'align="right"' in tag, tag
    assert "<bdi>reader.ar@example.com</bdi>" in body
    assert "<bdi>Russia</bdi> و<bdi>سوريا</bdi>" in body  # names joined the Arabic way
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "شكرًا لاشتراكك في نشرة The Levant Ledger." in text
    assert f"{RLM}The Levant Ledger\n" in text  # a line that opens in Latin, marked rtl
    assert "\nhttps://news.example/confirm/" in text  # links alone on their line, unmarked

    # 4. The email in Chromium at phone width: it mirrors (text, button on the right) and the
    # address and English names keep their order.
    mail_page = browser.new_page(viewport=PHONE)
    mail_page.set_content(body)
    _right_aligned(mail_page, "p.intro")
    cta = _box(mail_page, "a.button")
    assert cta["x"] + cta["width"] > width - 40 and cta["x"] > width / 3
    footer_text = mail_page.locator("td.footer p").first.inner_text()
    assert "reader.ar@example.com" in footer_text
    mail_page.screenshot(path=str(shots / "ar-4-confirmation-email-phone.png"), full_page=True)
    mail_page.close()

    # 5. The link works: the page is Arabic (the reader's language), the button confirms.
    # Opened in another browser, set to English: still Arabic (the link names the language).
    page.close()
    page = browser.new_page(viewport=PHONE, extra_http_headers={"Accept-Language": "en"})
    page.goto(live_server + link_in(mail, r"https?://\S+/confirm/\S+"))
    assert page.locator("html").get_attribute("dir") == "rtl"
    shot("5-confirm")
    page.get_by_role("button", name="تأكيد اشتراكي").click()
    assert page.get_by_role("heading", name="اشتراكك مفعّل").is_visible()
    with db.session_scope() as session:
        assert session.scalar(select(Reader.status).where(
            Reader.email == "reader.ar@example.com")) == "active"

    # 6. The preference centre, in Arabic, with the welcome email's Arabic subject.
    page.get_by_role("link", name="اختر المواضيع وعدد المرات").click()
    assert page.get_by_label("سوريا").is_checked()
    # (the language of pages and emails; "Stories in" has a checkbox of that name too)
    assert page.get_by_role("radio", name="العربية").is_checked()
    _right_aligned(page, "h1")
    shot("6-preferences")
    welcome = backend.smtp.wait_for(2)[1]
    assert str(welcome["Subject"]) == "أهلًا بك في The Levant Ledger: اشتراكك مفعّل"
    welcome_page = browser.new_page(viewport=PHONE)
    welcome_page.set_content(welcome.get_body(("html",)).get_content())
    welcome_page.screenshot(path=str(shots / "ar-7-welcome-email-phone.png"), full_page=True)
    welcome_page.close()

    if keep := os.environ.get("NEWSLETTER_SCREENSHOTS"):  # to look at them after the run
        Path(keep).mkdir(parents=True, exist_ok=True)
        for png in shots.iterdir():
            shutil.copy(png, keep)
