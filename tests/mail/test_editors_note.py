"""The editor's note at the top of a digest: editor text, printed as typed in the text part
and escaped in the HTML, never taken for markup, a template or one of our per-reader markers;
rendered with the edition's content (once per distinct digest, not per reader)."""

from __future__ import annotations

import email
from dataclasses import replace
from email import policy

import lxml.html

from newsletter.mail import rendering
from tests.mail.test_rendering import _digest_content, reader

NOTE = ("Polls close at 8 <b>tonight</b> & results {{ email }} follow: "
        f"__nl_email__ {rendering.MARK[:4]}{'0' * 16}_email__ __nlslot0__\n\n"
        "<img src=x onerror=alert(1)> The second paragraph.")


def renderer() -> rendering.Renderer:
    return rendering.Renderer(from_address="Ledger <news@example.com>",
                              list_id="<digest.example.com>", site_name="The Ledger",
                              base_url="https://news.example.com")


def with_note(note: str | None):
    content = _digest_content()
    return replace(content, edition=replace(content.edition, note=note))


def sent(content) -> email.message.EmailMessage:
    raw = renderer().digest(content).message(
        to_addr="reader@example.org", message_id="<d1@example.com>",
        unsubscribe_url="https://news.example.com/u/1", values=reader(1))
    return email.message_from_bytes(raw, policy=policy.default)


def test_a_note_is_shown_literally_in_text_and_html() -> None:
    message = sent(with_note(NOTE))
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    first, second = NOTE.split("\n\n")
    assert " ".join(first.split()) in " ".join(text.split())
    assert second in text
    doc = lxml.html.document_fromstring(html)
    [box] = doc.find_class("editor-note")
    assert [p.text_content() for p in box.findall(".//p")] == [first, second]
    assert not doc.xpath("//img[@onerror]") and not doc.xpath("//*[@class='editor-note']//b")
    assert "reader1@example.org" not in box.text_content()  # markers in a note stay text
    # The note comes first, above the count of stories; its style is inlined like the rest.
    assert text.index("Polls close") < text.index("stories on the topics you follow")
    assert "border-left" in box.get("style", "")


def test_without_a_note_the_digest_is_as_before() -> None:
    html = renderer().rendered_digest(with_note(None)).html
    assert "editor-note" not in html.split("</style>")[-1]
    assert "Polls close" not in html


def test_the_fragment_renderer_and_the_whole_document_agree_with_a_note() -> None:
    r = renderer()
    content = with_note(NOTE)
    context = r.contexts.of(content)
    pieces = rendering.personalise(r.assemble("digest", context), reader(1)).html
    whole = rendering.personalise(r.render("digest", context), reader(1)).html
    assert lxml.html.tostring(lxml.html.document_fromstring(pieces)) == \
        lxml.html.tostring(lxml.html.document_fromstring(whole))
