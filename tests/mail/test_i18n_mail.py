"""Emails in the reader's language: the language is an input of each render and of the
renderer's caches; Arabic is right to left on every cell; names are isolated and escaped;
the plain text carries a direction mark only where a line would start the wrong way."""

from __future__ import annotations

import lxml.html

from newsletter.config import CONSENT_TEXT
from newsletter.mail import rendering
from newsletter.mail.rendering import Renderer
from tests.mail.test_rendering import confirm_context, welcome_context

RLM, LRM = "\u200f", "\u200e"


def _confirm(locale: str | None, **over) -> dict:
    ctx = confirm_context() | {"consent_text": CONSENT_TEXT} | over
    return ctx if locale is None else ctx | {"locale": locale}


def test_a_notice_is_kept_once_per_language_and_never_served_in_another() -> None:
    r = Renderer.from_settings()
    ar = r.render_once("confirm", _confirm("ar"))
    en = r.render_once("confirm", _confirm("en"))
    assert ar.subject.startswith("أكّد اشتراكك") and en.subject.startswith("Confirm your")
    assert r.render_once("confirm", _confirm("ar")) is ar  # kept, per language
    assert r.render_once("confirm", _confirm("en")) is en
    assert len(r.notices) == 2
    # Without a language the site's (LANGUAGE: en) is used, as before languages existed.
    assert r.render("confirm", _confirm(None)).html == en.html


def test_arabic_is_rtl_on_the_document_and_every_cell() -> None:
    email = rendering.render("confirm", _confirm("ar"))
    doc = lxml.html.document_fromstring(email.html)
    assert (doc.get("lang"), doc.get("dir")) == ("ar", "rtl")
    cells = doc.xpath("//td[@class]")
    assert {c.get("class") for c in cells} >= {"masthead", "content", "footer", "button-cell",
                                               "browser-bar"}
    for cell in cells:
        if cell.get("class") == "browser-bar":  # the link sits at the end: the left
            assert (cell.get("dir"), cell.get("align")) == ("rtl", "left")
        else:
            assert (cell.get("dir"), cell.get("align")) == ("rtl", "right"), cell.get("class")
    details = doc.xpath("//div[@class='details']")[0].get("style")
    assert "border-right:4px solid" in details  # the rule on the start side
    en = lxml.html.document_fromstring(rendering.render("confirm", _confirm("en")).html)
    assert (en.get("dir"), en.xpath("//td[@class='content']")[0].get("align")) == ("ltr", "left")


def test_names_are_isolated_escaped_and_joined_the_languages_way() -> None:
    email = rendering.render("confirm", _confirm("ar", topics=["سوريا", "<b>Gulf</b>"]))
    assert "<bdi>سوريا</bdi> و<bdi>&lt;b&gt;Gulf&lt;/b&gt;</bdi>" in email.html
    assert "<b>Gulf</b>" not in email.html
    assert "سوريا و<b>Gulf</b>." in email.text
    en = rendering.render("confirm", _confirm("en", topics=["Syria", "Iraq", "Iran"]))
    assert "one digest a day on Syria, Iraq, and Iran." in " ".join(en.text.split())


def test_the_consent_text_is_data_even_through_its_translation() -> None:
    email = rendering.render("confirm", _confirm("ar", consent_text="I agree & <u>x</u>"))
    assert "«I agree &amp; &lt;u&gt;x&lt;/u&gt;»" in email.html


def test_plain_text_marks_only_lines_that_would_start_the_wrong_way() -> None:
    ar = rendering.render("welcome", welcome_context() | {"locale": "ar"}).text
    lines = ar.splitlines()
    assert lines[0] == RLM + "The Levant Ledger"  # Latin first: marked
    assert any(line.startswith("شكرًا لتأكيدك") for line in lines)  # Arabic first: as is
    urls = [line for line in lines if "://" in line and " " not in line]
    assert urls and all(not line.startswith((RLM, LRM)) for line in urls)
    en = rendering.render("welcome", welcome_context() | {"locale": "en"}).text
    assert RLM not in en and LRM not in en


def test_an_english_email_marks_a_line_that_opens_in_arabic() -> None:
    en = rendering.render("welcome", welcome_context() | {
        "locale": "en", "site_name": "صحيفة المشرق"}).text
    assert en.splitlines()[0] == LRM + "صحيفة المشرق"
