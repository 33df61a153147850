"""An Arabic reader and a bilingual one sign up on the Arabic form in real Chromium, confirm,
and get their digest through a real worker and SMTP server; the captured emails are shown in
Chromium at phone width: right to left from top to bottom for the Arabic reader, one email
with an Arabic part then an English part for the bilingual one.

Screenshots go to NEWSLETTER_SCREENSHOTS (default: the test's temporary directory).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from newsletter import db
from newsletter.models import Reader, Topic
from tests.browser.test_browser import PHONE, link_in
from tests.conftest import ADMIN_TOKEN, live_web
from tests.helpers import html_part, wait_done

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STORIES = [("https://news.example/ar/1", "وصول قافلة المساعدات الأممية إلى إدلب", "ar", "Syria",
            "قال مسؤولون في الأمم المتحدة إن القافلة عبرت معبر باب الهوى صباح الخميس."),
           ("https://news.example/ar/2", "وزراء G7 يناقشون أسعار الطاقة في عمّان 2026", "ar",
            "Energy", "اجتمع وزراء الطاقة في مجموعة السبع لبحث أسعار النفط والغاز."),
           ("https://news.example/en/1", "Aid convoy reaches Idlib", "en", "Syria",
            "UN officials said the convoy crossed at Bab al-Hawa on Thursday morning.")]


@pytest.fixture
def live_server(fresh, tmp_path) -> str:
    with live_web(tmp_path / "web.log") as base:
        yield base


def sign_up(page, base: str, email: str, *, also_english: bool, shot: Path | None = None) -> None:
    page.goto(f"{base}/subscribe?lang=ar")
    assert page.locator("html").get_attribute("dir") == "rtl"
    # The languages read default to the form's: Arabic ticked, English not.
    assert page.locator("input[name=languages][value=ar]").is_checked()
    assert not page.locator("input[name=languages][value=en]").is_checked()
    page.fill("#email", email)
    page.locator("input[name=topics][value=syria]").check()
    page.locator("input[name=topics][value=energy]").check()
    page.locator("input[name=frequency][value=weekly]").check()
    if also_english:
        page.locator("input[name=languages][value=en]").check()
    if shot is not None:
        page.locator("#languages").scroll_into_view_if_needed()
        page.screenshot(path=str(shot))
    page.locator("input[name=consent]").check()
    page.wait_for_timeout(2100)  # people take longer than FORM_MIN_SECONDS to fill a form
    page.locator("form button[type=submit]").last.click()
    page.wait_for_load_state()


def test_an_arabic_and_a_bilingual_reader_get_their_digest(backend, live_server, browser,
                                                            tmp_path) -> None:
    shots = Path(os.environ.get("NEWSLETTER_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    for name in ("Syria", "Energy"):
        assert httpx.post(f"{live_server}/api/topics", json={"name": name},
                          headers=AUTH).status_code in (200, 201)
    with db.session_scope() as session:  # the editors' Arabic names of the topics
        session.execute(update(Topic).where(Topic.slug == "syria").values(names={"ar": "سوريا"}))
        session.execute(update(Topic).where(Topic.slug == "energy")
                        .values(names={"ar": "الطاقة"}))

    page = browser.new_page(viewport=PHONE)
    sign_up(page, live_server, "amal@example.com", also_english=False)
    sign_up(page, live_server, "sami@example.com", also_english=True,
            shot=shots / "langs-signup-arabic-form-languages-phone.png")
    page.screenshot(path=str(shots / "langs-signup-check-inbox-phone.png"), full_page=True)
    for mail in backend.smtp.wait_for(2):
        page.goto(live_server + link_in(mail, r"https?://\S+/confirm/\S+"))
        page.locator("form button[type=submit]").click()
        page.wait_for_load_state()
    with db.session_scope() as session:
        readers = dict(session.execute(select(Reader.email, Reader.languages)
                                       .where(Reader.status == "active")).all())
    assert readers == {"amal@example.com": "ar", "sami@example.com": "ar,en"}

    for url, title, lang, tag, summary in STORIES:
        r = httpx.post(f"{live_server}/api/articles", headers=AUTH, json={
            "url": url, "title": title, "lang": lang, "tags": [tag], "summary": summary,
            "author": "ليلى حداد" if lang == "ar" else "Lina Haddad"})
        assert r.status_code == 201, r.text
    r = httpx.post(f"{live_server}/api/editions", headers=AUTH, json={"frequency": "weekly"})
    assert wait_done(r.json()["id"])["counts"]["sent"] == 2
    digests = {str(m["To"]): m for m in backend.smtp.wait_for(6)[4:]}

    arabic = html_part(digests["amal@example.com"])
    # A page of its own: the live server's CSP (no inline styles) must not follow the email.
    page = browser.new_page(viewport=PHONE)
    page.set_content(arabic)
    assert page.locator("html").get_attribute("dir") == "rtl"
    headline = page.get_by_text("وصول قافلة المساعدات الأممية إلى إدلب")
    box = headline.bounding_box()
    # Right to left: the headline ends at the right edge of the content, not the left.
    assert box["x"] + box["width"] > PHONE["width"] - 40, box
    assert "Aid convoy" not in arabic
    page.screenshot(path=str(shots / "langs-digest-arabic-phone.png"), full_page=True)

    both = html_part(digests["sami@example.com"])
    page.set_content(both)
    english = page.get_by_text("Aid convoy reaches Idlib").bounding_box()
    assert english["x"] < 40  # the English part runs left to right
    assert both.index("إدلب") < both.index("Aid convoy reaches Idlib")
    page.screenshot(path=str(shots / "langs-digest-bilingual-phone.png"), full_page=True)
