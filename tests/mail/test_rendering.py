"""Email rendering: every template renders, CSS is inlined, data is escaped, and the
render-once / personalise-per-reader split gives the same email as rendering per reader."""

from __future__ import annotations

import re
from typing import Any

import lxml.html
import pytest

from newsletter.mail import rendering
from newsletter.mail.rendering import (
    RenderedEmail,
    personalise,
    placeholder,
    premailer_calls,
    render,
    template_names,
)
from tests.helpers import article, placeholders

SITE = {"site_name": "The Levant Ledger", "base_url": "https://news.example.com"}


def reader(n: int) -> dict[str, str]:
    return {
        "email": f"reader{n}@example.org",
        "unsubscribe_url": f"https://news.example.com/unsubscribe/tok{n}.sig?src=email&n={n}",
        "preferences_url": f"https://news.example.com/preferences/tok{n}.sig",
    }


def digest_context(
    topics: tuple[tuple[str, str], ...] = (
        ("syria", "Syria"),
        ("russia", "Russia"),
        ("economy", "Economy"),
    ),
    per_topic: int = 5,
    frequency: str = "weekly",
    corrections: int = 0,
) -> dict[str, Any]:
    sections, n = [], 0
    for slug, name in topics:
        articles = []
        for _ in range(per_topic):
            n += 1
            articles.append(article(n))
        sections.append({"topic": {"slug": slug, "name": name}, "articles": articles})
    return {
        **SITE,
        **placeholders(),
        "edition": {"id": 42, "frequency": frequency, "date_label": "28 November 2026"},
        "archive_url": "https://news.example.com/editions/42",
        "article_count": n,
        "sections": sections,
        "corrections": [correction(100 + i) for i in range(corrections)],
    }


def correction(n: int) -> dict[str, Any]:
    """An article the reader already got, as the "Updated since we sent it" section shows it."""
    return article(
        n,
        title=f"Ceasefire talks collapse in Geneva, day {n}",
        topic={"slug": "jordan", "name": "Jordan"},
        updated_label="29 Nov 2026, 11:40",
        previous_title=f"Ceasefire talks resume in Geneva, day {n}" if n % 2 == 0 else None,
    )


def digest_with_corrections_context() -> dict[str, Any]:
    return digest_context(corrections=2)


def confirm_context() -> dict[str, Any]:
    return {
        **SITE,
        **placeholders(),
        "confirm_url": "https://news.example.com/confirm/eyJyIjo0Mn0.abc",
        "topics": ["Syria", "Russia"],
        "frequency": "daily",
        "consent_text": "I agree to receive email newsletters about the topics I selected.",
        "view_url": "https://news.example.com/emails/eyJyIjo0Mn0.view",
    }


def welcome_context() -> dict[str, Any]:
    return {**confirm_context(), "frequency": "weekly"}


def alert_context() -> dict[str, Any]:
    # An alert is a digest of the last few minutes: the same context, kind "alert".
    ctx = digest_context(topics=(("syria", "Syria"), ("jordan", "Jordan")), per_topic=2,
                         frequency="immediate")
    ctx["edition"]["kind"] = "alert"
    return ctx


def data_access_context() -> dict[str, Any]:
    return {**SITE, **placeholders(), "data_url": "https://news.example.com/my-data/eyJyIjo0Mn0.d",
            "lifetime": "1 hour"}


# A new template needs a sample context here: the parametrised tests cover every folder.
SAMPLE_CONTEXTS = {"confirm": confirm_context, "digest": digest_with_corrections_context,
                   "welcome": welcome_context, "alert": alert_context,
                   "data_access": data_access_context}


def sample(name: str) -> dict[str, Any]:
    assert name in SAMPLE_CONTEXTS, f"add a sample context for email template {name!r}"
    return SAMPLE_CONTEXTS[name]()


def style_blocks(html: str) -> list[str]:
    return re.findall(r"<style[^>]*>(.*?)</style>", html, flags=re.S | re.I)


def test_template_names_lists_email_folders_only() -> None:
    names = template_names()
    assert {"confirm", "digest"} <= set(names)
    assert not any(n.startswith("_") for n in names)
    assert rendering.TEMPLATES_DIR.is_dir()


@pytest.mark.parametrize("name", template_names())
def test_every_template_renders_a_complete_email(name: str) -> None:
    email = render(name, sample(name))

    assert email.subject and "\n" not in email.subject and "\r" not in email.subject
    assert email.subject == " ".join(email.subject.split())
    assert len(email.subject) <= 100

    for part in (email.subject, email.text, email.html):
        assert "{{" not in part and "{%" not in part
    assert email.text.strip() and "<p" not in email.text and "&amp;" not in email.text
    assert all(len(line.encode()) <= 998 for line in email.text.splitlines())
    assert placeholder("email") in email.text and placeholder("email") in email.html

    html = email.html
    assert html.startswith("<!DOCTYPE html>")
    doc = lxml.html.document_fromstring(html)
    assert doc.get("lang") == "en"
    assert doc.xpath("//meta[@charset='utf-8']")

    # Only the media query survives in <style>; every other rule became style= attributes.
    (css,) = style_blocks(html)
    assert css.strip().startswith("@media")
    assert css.count("{") == css.count("}")
    outside_media = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", css)
    assert outside_media.strip() == ""

    body = doc.body
    assert "background-color" in body.get("style", "")
    for el in body.iter():
        if isinstance(el.tag, str) and el.get("class"):
            assert el.get("style"), f"<{el.tag} class={el.get('class')!r}> has no inline style"
    for tag in ("p", "a"):
        elements = body.findall(f".//{tag}")
        assert elements and all(e.get("style") for e in elements), f"un-styled <{tag}>"


def test_digest_content_and_links() -> None:
    ctx = digest_context()
    email = render("digest", ctx)
    assert email.subject == (
        "Your weekly digest: 15 stories on Syria, Russia and more — The Levant Ledger"
    )

    doc = lxml.html.document_fromstring(email.html)
    links = {a.text_content().strip(): a.get("href") for a in doc.iter("a")}
    assert links["View in browser"] == ctx["archive_url"]
    assert links["Unsubscribe"] == placeholder("unsubscribe_url")
    assert links["Change preferences"] == placeholder("preferences_url")
    first = ctx["sections"][0]["articles"][0]
    assert links[first["title"]] == first["url"]  # & in the URL round-trips through escaping
    assert [h.text_content() for h in doc.iter("h2")] == ["Syria", "Russia", "Economy"]
    assert "You receive this because you follow: Syria, Russia, Economy." in doc.text_content()
    images = doc.xpath("//img")
    assert images and all(i.get("alt") and i.get("width") == "552" for i in images)
    assert "max-width:552px" in images[0].get("style").replace(" ", "")

    text = email.text
    assert "View in browser:\nhttps://news.example.com/editions/42\n" in text
    assert f"\n{first['title']}\n{first['url']}\n" in text
    assert "You receive this because you follow: Syria, Russia, Economy." in text
    assert f"Unsubscribe:\n{placeholder('unsubscribe_url')}" in text
    for line in text.splitlines():
        if not line.lstrip().startswith("http"):  # a link is never broken (a listed one is indented)
            assert len(line) <= 72, line


@pytest.mark.parametrize(
    ("topics", "count", "expected"),
    [
        ((("syria", "Syria"),), 1, "Your daily digest: 1 story on Syria — The Levant Ledger"),
        (
            (("syria", "Syria"), ("russia", "Russia")),
            2,
            "Your daily digest: 2 stories on Syria and Russia — The Levant Ledger",
        ),
    ],
)
def test_digest_subject_wording(topics: tuple, count: int, expected: str) -> None:
    ctx = digest_context(topics=topics, per_topic=1, frequency="daily")
    assert ctx["article_count"] == count
    assert render("digest", ctx).subject == expected


def test_digest_subject_stays_short_with_long_topic_names() -> None:
    long = "International Criminal Court proceedings and war-crimes investigations"
    ctx = digest_context(topics=(("icc", long), ("russia", "Russia")), per_topic=2)
    subject = render("digest", ctx).subject
    assert len(subject) <= 100
    assert subject.startswith("Your weekly digest: 4 stories on International")
    assert subject.endswith("— The Levant Ledger")


def test_confirm_email_explains_what_was_agreed() -> None:
    ctx = confirm_context()
    email = render("confirm", ctx)
    assert email.subject == "Confirm your subscription to The Levant Ledger"
    doc = lxml.html.document_fromstring(email.html)
    button = doc.xpath("//a[contains(@class, 'button')]")[0]
    assert button.get("href") == ctx["confirm_url"]
    content = doc.text_content()
    assert ctx["consent_text"] in content
    assert "one digest a day on Syria and Russia" in " ".join(content.split())
    assert "ignore this email" in content
    assert ctx["confirm_url"] in email.text and ctx["consent_text"][:40] in email.text
    assert "one digest a day on Syria and Russia" in " ".join(email.text.split())


HOSTILE_TITLE = '<script>alert(1)</script> "quotes" & ampersand'
HOSTILE_SUMMARY = 'It\'s <b>bold</b> & "quoted" </p><img src=x onerror=alert(2)>'


def test_editor_and_feed_text_is_escaped_in_html_and_readable_in_text() -> None:
    ctx = digest_context(per_topic=1)
    ctx["sections"][0]["topic"]["name"] = "Syria <i>& co</i>"
    ctx["sections"][0]["articles"][0].update(
        title=HOSTILE_TITLE,
        summary=HOSTILE_SUMMARY,
        author="O'Brien <admin@x>",
        url="javascript:alert(3)",
        image_url='https://cdn.example.com/a.jpg?x=1&y="2"',
    )
    email = render("digest", ctx)

    html = email.html
    assert "<script" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&amp; ampersand" in html
    assert "javascript:" not in html  # only http(s) links reach an href
    doc = lxml.html.document_fromstring(html)
    assert not doc.xpath("//script") and not doc.xpath("//*[@onerror]")
    assert HOSTILE_TITLE in [h.text_content() for h in doc.iter("h3")]
    assert HOSTILE_SUMMARY in doc.text_content()
    assert doc.xpath("//img")[0].get("src") == 'https://cdn.example.com/a.jpg?x=1&y="2"'
    assert doc.xpath("//img")[0].get("alt") == HOSTILE_TITLE

    text = email.text
    assert HOSTILE_TITLE in text
    assert 'It\'s <b>bold</b> & "quoted"' in text
    assert "By O'Brien <admin@x>" in text
    assert "&amp;" not in text and "&lt;" not in text and "&#" not in text
    assert "Syria <i>& co</i>" in email.subject


def test_confirm_escapes_consent_and_topics() -> None:
    ctx = confirm_context() | {"topics": ["<Economy>"], "consent_text": "I agree & <u>consent</u>"}
    email = render("confirm", ctx)
    assert "&lt;Economy&gt;" in email.html and "<Economy>" not in email.html
    assert "I agree &amp; &lt;u&gt;consent&lt;/u&gt;" in email.html
    assert "I agree & <u>consent</u>" in email.text


def test_personalise_replaces_every_placeholder_and_escapes_for_html() -> None:
    shared = render("digest", digest_context(per_topic=1))
    values = {
        "email": "a&b@example.com",
        "unsubscribe_url": 'https://news.example.com/unsubscribe/t.s?x=1&y="2"',
        "preferences_url": "https://news.example.com/preferences/t.s",
    }
    email = personalise(shared, values)

    for part in (email.subject, email.text, email.html):
        assert rendering.MARK not in part
    assert "a&b@example.com" in email.text and values["unsubscribe_url"] in email.text
    assert "a&amp;b@example.com" in email.html and "a&b@example.com" not in email.html
    doc = lxml.html.document_fromstring(email.html)
    links = {a.text_content().strip(): a.get("href") for a in doc.iter("a")}
    assert links["Unsubscribe"] == values["unsubscribe_url"]
    assert links["Change preferences"] == values["preferences_url"]
    assert "This email was sent to a&b@example.com." in doc.text_content()
    # The shared rendering is untouched and reusable for the next reader.
    assert placeholder("email") in shared.html


def test_personalise_refuses_to_leave_a_placeholder_unfilled() -> None:
    shared = render("digest", digest_context(per_topic=1))
    with pytest.raises(KeyError, match="preferences_url"):
        personalise(shared, {"email": "a@example.org", "unsubscribe_url": "https://x/u"})


def test_personalise_fills_only_the_markers_a_template_printed() -> None:
    # Text that spells a marker's name is data: only placeholder() holds this process's MARK.
    mine = placeholder("email")
    email = RenderedEmail(
        subject="__nl_ hi __nl_x", text=f"a {mine} b __nl_email__",
        html=f"__nl_Caps__ {mine} __nl_email__"
    )
    out = personalise(email, {"email": "<r@x>"})
    assert out == RenderedEmail(
        subject="__nl_ hi __nl_x", text="a <r@x> b __nl_email__",
        html="__nl_Caps__ &lt;r@x&gt; __nl_email__"
    )


def test_a_printed_value_loses_its_control_characters() -> None:
    context = digest_context(per_topic=1)
    article = context["sections"][0]["articles"][0]
    article["title"] = "Aid\x01 reaches\x00 Idlib\x1b"
    email = render("digest", context)
    assert "Aid reaches Idlib" in email.text and "Aid reaches Idlib" in email.html
    assert not any(c in email.html + email.text for c in "\x00\x01\x1b")


@pytest.mark.parametrize("bad", ["", "Email", "unsub-url", "a__b", "_a", "a_", "ü"])
def test_placeholder_names_are_restricted(bad: str) -> None:
    with pytest.raises(ValueError):
        placeholder(bad)


@pytest.mark.parametrize("name", ["digest", "confirm"])
def test_render_once_then_personalise_equals_rendering_per_reader(name: str) -> None:
    shared = render(name, sample(name))
    for n in range(4):
        direct = render(name, sample(name) | reader(n))
        assert personalise(shared, reader(n)) == direct


def test_premailer_runs_once_per_render_not_per_reader() -> None:
    before = premailer_calls()
    shared = render("digest", digest_context())
    assert premailer_calls() == before + 1
    for n in range(50):
        personalise(shared, reader(n))
    assert premailer_calls() == before + 1
    render("confirm", confirm_context())
    assert premailer_calls() == before + 2


def test_strict_undefined_catches_a_missing_context_key() -> None:
    ctx = digest_context()
    del ctx["archive_url"]
    with pytest.raises(Exception, match="archive_url"):
        render("digest", ctx)


@pytest.mark.parametrize("bad", ["../etc", "_base", "", "nope"])
def test_unknown_or_unsafe_template_names_are_rejected(bad: str) -> None:
    with pytest.raises((ValueError, LookupError)):
        render(bad, digest_context())


def test_non_latin_content_survives_inlining() -> None:
    ctx = digest_context(topics=(("syria", "سوريا"),), per_topic=1)
    ctx["sections"][0]["articles"][0]["title"] = "استئناف المحادثات في جنيف — Ṣaḥāfa"
    email = render("digest", ctx)
    assert "استئناف المحادثات في جنيف — Ṣaḥāfa" in email.html
    assert "سوريا" in email.subject and "استئناف" in email.text


def test_digest_corrections_section_follows_the_new_stories() -> None:
    ctx = digest_context(per_topic=1, corrections=2)
    email = render("digest", ctx)
    doc = lxml.html.document_fromstring(email.html)
    assert [h.text_content() for h in doc.iter("h2")] == [
        "Syria", "Russia", "Economy", "Updated since we sent it"]
    fixed = ctx["corrections"][0]
    links = {a.text_content().strip(): a.get("href") for a in doc.iter("a")}
    assert links[fixed["title"]] == fixed["url"]
    content = " ".join(doc.text_content().split())
    assert "day 100 Updated 29 Nov 2026, 11:40 · Jordan" in content
    assert "day 101 Updated 29 Nov 2026, 11:40 · By Lina Haddad · Jordan" in content
    assert f"Previously headlined: “{fixed['previous_title']}”" in content
    assert content.count("Previously headlined") == 1  # the second changed only its summary
    # The corrected article's topic counts among those the reader follows.
    assert "You receive this because you follow: Syria, Russia, Economy, Jordan." in content
    assert email.subject.startswith("Your weekly digest: 3 stories on Syria, Russia and more")

    text = email.text
    assert "\nUPDATED SINCE WE SENT IT\n========================\n" in text
    assert f"\n{fixed['title']}\n{fixed['url']}\nUpdated 29 Nov 2026, 11:40 - Jordan\n" in text
    assert f'Previously headlined: "{fixed["previous_title"]}"' in text
    assert text.index("UPDATED SINCE WE SENT IT") > text.index("ECONOMY")


def test_a_digest_of_corrections_alone_says_so() -> None:
    ctx = digest_context(topics=(), per_topic=0, corrections=1)
    email = render("digest", ctx)
    assert email.subject == (
        "Updated since we sent it: Ceasefire talks collapse in Geneva, day 100 — The Levant Ledger")
    doc = lxml.html.document_fromstring(email.html)
    content = " ".join(doc.text_content().split())
    assert "A story we sent you has been updated." in content
    assert "0 stories" not in content and "0 stories" not in email.text
    assert [h.text_content() for h in doc.iter("h2")] == ["Updated since we sent it"]
    assert "You receive this because you follow: Jordan." in content
    assert "A story we sent you has been updated." in email.text


def test_correction_text_is_escaped() -> None:
    ctx = digest_context(topics=(), per_topic=0, corrections=1)
    ctx["corrections"][0].update(title=HOSTILE_TITLE, previous_title=HOSTILE_SUMMARY)
    email = render("digest", ctx)
    assert "<script" not in email.html and "<img src=x" not in email.html
    doc = lxml.html.document_fromstring(email.html)
    assert HOSTILE_SUMMARY in doc.text_content() and not doc.xpath("//*[@onerror]")
    assert HOSTILE_TITLE in email.text and "&lt;" not in email.text
    assert "\n" not in email.subject and len(email.subject) <= 100


# --- the renderer: data in, bytes out --------------------------------------------------------

def _digest_content(version: str = "v1", *, titles: tuple[str, ...] = ("Talks resume",
                                                                       "Markets calm")):
    from datetime import UTC, datetime

    from newsletter.mail.digest import DigestContent, EditionInfo, Entry, Story, Topic

    at = datetime(2026, 11, 28, 9, 15, tzinfo=UTC)
    syria = Topic(1, "syria", "Syria")
    stories = [Story(i, at, title, f"https://news.example.com/{i}?a=1&b=2", f"Summary of {i}.",
                     None, None, at) for i, title in enumerate(titles, start=1)]
    fix = Entry("correction", stories[0], syria, previous_title="Talks stall", changed_at=at)
    return DigestContent(EditionInfo(7, "digest", "weekly", at), "k1", version,
                         tuple(Entry("new", s, syria) for s in stories) + (fix,),
                         tuple(s.id for s in stories), shared=True)


def test_a_digest_renders_from_plain_data_without_a_database() -> None:
    import email
    from email import policy

    renderer = rendering.Renderer(from_address="Ledger <news@example.com>",
                                  list_id="<digest.example.com>", site_name="The Ledger",
                                  base_url="https://news.example.com")
    template = renderer.digest(_digest_content())
    raw = template.message(to_addr="reader@example.org", message_id="<d1@example.com>",
                           unsubscribe_url="https://news.example.com/u/1", values=reader(1))
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["From"] == "Ledger <news@example.com>" and msg["To"] == "reader@example.org"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "Talks resume" in part and "Markets calm" in part and "Talks stall" in part
        assert "reader1@example.org" in part and rendering.MARK not in part
    assert "https://news.example.com/editions/7" in html
    # Kept (shared) at its version: the same template, no premailer; a new version renders.
    runs = renderer.premailer_runs
    assert renderer.digest(_digest_content()) is template and renderer.premailer_runs == runs
    assert renderer.held(7, _digest_content().edition.cutoff_at, "k1")[0] == "v1"
    assert renderer.digest(_digest_content("v2")) is not template


def test_renderers_share_no_state_and_compile_templates_alone() -> None:
    one, two = rendering.Renderer.from_settings(), rendering.Renderer.from_settings()
    assert one.env is not two.env
    # digest/body.html needs fragment, slot, piece and partial: each renderer has its own.
    for r in (one, two):
        for name in ("fragment", "slot", "http_url", "wordwrap", "join_and"):
            assert name in r.env.filters
        assert {"piece", "partial"} <= set(r.env.globals)
        r.env.get_template("digest/body.html")
    one.rendered_digest(_digest_content())
    assert one.premailer_runs >= 1 and two.premailer_runs == 0
    assert len(one.fragments.pieces) and not len(two.fragments.pieces)
    assert one.rendered_digest(_digest_content()).html == \
        two.rendered_digest(_digest_content()).html


def test_every_rendering_cache_is_bounded() -> None:
    from newsletter.mail.lru import LRU

    r = rendering.Renderer.from_settings()
    caches = [r.wordwraps, r.digests, r.rendered_once, r.messages, r.notices, r.shared_chunks,
              r.contexts.items, r.contexts.sections, r.contexts.stories, r.fragments.fragments,
              r.fragments.shells, r.fragments.pieces, r.fragments.groups,
              r.fragments.lxml_text, r.fragments.text_lines]
    assert all(isinstance(c, LRU) and c.size > 0 for c in caches)
    small = LRU(3)
    for k in range(5):
        small.put(k, k)
        small.get(0)  # used: kept
    assert len(small) == 3 and 0 in small and 4 in small and 1 not in small
    by_size = LRU(10, weigh=lambda _k, v: len(v))
    by_size.put("a", "x" * 6)
    by_size.put("b", "y" * 6)
    assert "a" not in by_size and by_size.weight == 6
