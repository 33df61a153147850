"""Right-to-left digests and alerts: dir and align on the cells (surviving premailer), <bdi>
around headlines and topic names, a part per language in a bilingual digest, and a plain-text
part with direction marks where a line would otherwise read the wrong way."""

from __future__ import annotations

from datetime import UTC, datetime

import lxml.html
import pytest

from newsletter.mail import rendering
from newsletter.mail.digest import DigestContent, EditionInfo, Entry, Story, Topic

CUTOFF = datetime(2026, 12, 7, 6, tzinfo=UTC)
SYRIA = Topic(1, "syria", "Syria", (("ar", "سوريا"),))
ENERGY = Topic(2, "energy", "Energy", (("ar", "الطاقة"),))
RLM, LRM = "\u200f", "\u200e"


def story(n: int, title: str, lang: str, summary: str = "") -> Story:
    return Story(id=n, updated_at=CUTOFF, title=title, url=f"https://news.example/{lang}/{n}",
                 summary=summary or title, author="ليلى حداد" if lang == "ar" else "Lina Haddad",
                 image_url=None, published_at=CUTOFF, lang=lang)


ARABIC = [Entry("new", story(1, "وصول المساعدات إلى إدلب", "ar",
                             "قال مسؤولون إن القافلة وصلت صباح الخميس."), SYRIA),
          # A headline that mixes Arabic with a Latin name and a number: must not scramble.
          Entry("new", story(2, "NATO تجتمع في عمّان 2026", "ar",
                             "G7 وزراء الطاقة يجتمعون في عمّان."), SYRIA),
          Entry("new", story(3, "أسعار النفط مستقرة", "ar"), ENERGY)]
ENGLISH = [Entry("new", story(4, "Aid reaches Idlib", "en"), SYRIA)]


def content(entries, locale: str, key: str = "k", kind: str = "digest") -> DigestContent:
    return DigestContent(EditionInfo(1, kind, "weekly" if kind == "digest" else "immediate",
                                     CUTOFF), key, "v1", tuple(entries),
                         tuple(e.story.id for e in entries), locale=locale)


@pytest.fixture
def renderer() -> rendering.Renderer:
    return rendering.Renderer.from_settings()


def cells_of(doc, text: str):
    """The nearest table cell around the first element holding ``text`` (the preheader,
    outside any cell, aside)."""
    for found in doc.iter():
        if isinstance(found.tag, str) and found.text and text in found.text:
            cell = next((a for a in found.iterancestors() if a.tag == "td"), None)
            if cell is not None:
                return cell
    raise AssertionError(f"{text!r} is in no cell")


def test_an_arabic_digest_is_rtl_by_attributes_that_survive_premailer(renderer) -> None:
    email = renderer.rendered_digest(content(ARABIC, "ar"))
    doc = lxml.html.document_fromstring(email.html)
    assert doc.get("dir") == "rtl" and doc.get("lang") == "ar"
    for cls in ("masthead", "content", "footer"):
        (cell,) = doc.find_class(cls)
        assert (cell.get("dir"), cell.get("align")) == ("rtl", "right"), cls
    (bar,) = doc.find_class("browser-bar")
    assert bar.get("align") == "left"  # the end side of a right-to-left line
    story_cell = cells_of(doc, "وصول المساعدات إلى إدلب")
    assert (story_cell.get("dir"), story_cell.get("align"), story_cell.get("lang")) == \
        ("rtl", "right", "ar")
    assert "Tahoma" in story_cell.get("style")  # an Arabic face, inlined by premailer
    heading = cells_of(doc, "سوريا")  # the topic's Arabic name
    assert heading.get("dir") == "rtl" and "letter-spacing:0" in \
        heading.find(".//h2").get("style")
    # Headlines, bylines and topic names isolated.
    bdis = [b.text_content() for b in doc.iter("bdi")]
    assert "NATO تجتمع في عمّان 2026" in bdis and "سوريا" in bdis and "ليلى حداد" in bdis
    # Arabic words of ours: the subject, the intro, the call to read on.
    assert email.subject.startswith("نشرتك الأسبوعية: ٣ أخبار") or \
        email.subject.startswith("نشرتك الأسبوعية: 3 أخبار"), email.subject
    assert "اقرأ الخبر" in email.html and "Read the story" not in email.html


def test_an_arabic_alert_is_rtl_too(renderer) -> None:
    email = renderer.rendered_digest(content(ARABIC[:2], "ar", kind="alert"))
    doc = lxml.html.document_fromstring(email.html)
    assert doc.get("dir") == "rtl"
    (cell,) = doc.find_class("content")
    assert cell.get("align") == "right"
    assert cells_of(doc, "وصول المساعدات إلى إدلب").get("dir") == "rtl"
    assert "تنبيه إخباري" in email.html


def test_a_bilingual_digest_has_a_part_per_language_each_in_its_direction(renderer) -> None:
    email = renderer.rendered_digest(content(ARABIC + ENGLISH, "ar"))
    doc = lxml.html.document_fromstring(email.html)
    titles = [h.text_content() for h in doc.find_class("language-title")]
    assert titles == ["العربية", "English"]  # the reader's order, each named in itself
    assert cells_of(doc, "Aid reaches Idlib").get("dir") == "ltr"
    assert cells_of(doc, "Aid reaches Idlib").get("align") == "left"
    assert cells_of(doc, "أسعار النفط مستقرة").get("dir") == "rtl"
    assert "Read the story" in email.html and "اقرأ الخبر" in email.html
    assert email.html.index("أسعار النفط مستقرة") < email.html.index("Aid reaches Idlib")


def test_fragment_rendering_matches_whole_document_premailer_in_both_directions(
        renderer) -> None:
    for entries, locale in ((ARABIC, "ar"), (ARABIC + ENGLISH, "ar"), (ENGLISH + ARABIC, "en")):
        context = renderer.contexts.of(content(entries, locale))
        whole = renderer.render("digest", context)
        assembled = renderer.assemble("digest", context)
        assert assembled.html == whole.html and assembled.text == whole.text


def test_a_story_is_inlined_once_whatever_the_readers_language(renderer) -> None:
    """The cache of rendered fragments is keyed by the story's language, not the reader's:
    the Arabic story in an English reader's digest is the same fragment."""
    renderer.rendered_digest(content(ARABIC, "ar", key="a"))
    runs = renderer.premailer_runs
    second = renderer.rendered_digest(content(ARABIC, "en", key="b"))  # another shell only
    assert renderer.premailer_runs == runs + 1
    assert "اقرأ الخبر" in second.html  # the story's words stay in the story's language


def test_the_text_part_reads_right_to_left(renderer) -> None:
    text = renderer.rendered_digest(content(ARABIC + ENGLISH, "ar")).text
    lines = text.splitlines()
    # A line of an Arabic story that starts with a Latin word gets a RIGHT-TO-LEFT MARK…
    assert RLM + "NATO تجتمع في عمّان 2026" in lines
    assert RLM + "G7 وزراء الطاقة يجتمعون في عمّان." in lines
    # …a line that starts in Arabic needs none, nor do English lines or links.
    assert "وصول المساعدات إلى إدلب" in lines and "Aid reaches Idlib" in lines
    # One paragraph per story: its headline, link (the counted /r/ link, CLICK_TRACKING's
    # default: no mark, so it stays a clean link), byline, then its summary.
    at = lines.index("وصول المساعدات إلى إدلب")
    assert lines[at + 1].startswith("http") and "/r/" in lines[at + 1] and RLM not in lines[at + 1]
    assert lines[at + 3] == ""
    assert text.index("العربية") < text.index("English")
